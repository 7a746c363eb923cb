package store

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cofferhsm/coffer/internal/storage"
)

// On-disk layout; FORMAT.md is the normative description.
const (
	// NodeSize is the size of a tree node on the device: 8 sectors, one
	// 4 KiB flash page, allocated at an 8-sector boundary.
	NodeSize    = 4096
	nodeSectors = NodeSize / storage.SectorSize

	// MaxRecordSize is the largest record plaintext (FORMAT.md); the vault's
	// own bound must equal it, which applet/startup checks at build time.
	MaxRecordSize = 440

	// MaxIDSize bounds a user id (ids are hashed; the bound only stops
	// absurd input).
	MaxIDSize = 1024

	tagSize    = chacha20poly1305.Overhead // 16
	entrySize  = 32 + 8 + 32 + 32          // key, loc, hash, child key
	nodeHeader = 8
	nodePlain  = NodeSize - tagSize

	// MaxEntries is the capacity of a node.
	MaxEntries = (nodePlain - nodeHeader) / entrySize // 39

	maxLevel = 24 // far beyond any reachable height (39/2)^24 records

	recordHeader = 12 // magic, version
	recordPlain  = 2 + MaxRecordSize
	recordEnd    = recordHeader + recordPlain + tagSize // 470

	anchorHeader     = 4 + chacha20poly1305.NonceSizeX // magic, nonce
	anchorPayloadLen = 128
	anchorEnd        = anchorHeader + anchorPayloadLen + tagSize // 172

	nodeKindLeaf     = 1
	nodeKindInternal = 2
)

var (
	superMagic  = [16]byte{'C', 'o', 'f', 'f', 'e', 'r', 'S', 't', 'o', 'r', 'e', '/', 'v', '1', 0, 0}
	recordMagic = [4]byte{'C', 'R', 'S', '1'}
	anchorMagic = [4]byte{'C', 'A', 'N', '1'}

	adNode   = []byte("coffer/store node v1")
	adRecord = []byte("coffer/store record v1")
	adAnchor = []byte("coffer/store anchor v1")
)

// tampered and tamperedf report stored data that failed its integrity
// check (storage.ErrTampered, see storage.TamperError).
func tampered(reason string) error       { return &storage.TamperError{Reason: reason} }
func tamperedf(f string, a ...any) error { return storage.Tamperedf(f, a...) }
func sum(b []byte) (h [32]byte)          { return sha256.Sum256(b) }
func putU64(b []byte, v uint64)          { binary.BigEndian.PutUint64(b, v) }
func getU64(b []byte) uint64             { return binary.BigEndian.Uint64(b) }
func freshKey() (k [32]byte)             { rand.Read(k[:]); return k }
func hkdfKey(secret, salt []byte, info string) (k [32]byte) {
	b, err := hkdf.Key(sha256.New, secret, salt, info, 32)
	if err != nil {
		panic(err)
	}
	return [32]byte(b)
}

func isZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}

// ref points at a node or a record: its location, the SHA-256 of its
// on-disk bytes, and the key it is sealed under.
type ref struct {
	loc  uint64
	hash [32]byte
	key  [32]byte
}

// deviceKeys are derived from the device sealing key.
type deviceKeys struct {
	anchor [32]byte // seals the anchor payload
	super  [32]byte // MACs the superblock
}

func deriveDeviceKeys(sealing *[32]byte) deviceKeys {
	return deviceKeys{
		anchor: hkdfKey(sealing[:], nil, "coffer/store anchor v1"),
		super:  hkdfKey(sealing[:], nil, "coffer/store superblock v1"),
	}
}

func deriveIDKey(sealing *[32]byte, storeID [16]byte) [32]byte {
	return hkdfKey(sealing[:], storeID[:], "coffer/store id v1")
}

// superblock is sector 0 of the device.
type superblock struct {
	storeID [16]byte
	sectors uint64
}

func (sb *superblock) encode(k *deviceKeys) []byte {
	b := make([]byte, storage.SectorSize)
	copy(b, superMagic[:])
	copy(b[16:], sb.storeID[:])
	putU64(b[32:], sb.sectors)
	binary.BigEndian.PutUint32(b[40:], NodeSize)
	binary.BigEndian.PutUint32(b[44:], MaxEntries)
	m := hmac.New(sha256.New, k.super[:])
	m.Write(b[:48])
	m.Sum(b[48:48])
	return b
}

var errNoSuperblock = errors.New("store: no superblock")

func decodeSuperblock(b []byte, k *deviceKeys) (superblock, error) {
	var sb superblock
	if len(b) != storage.SectorSize {
		return sb, tampered("superblock size")
	}
	if isZero(b) {
		return sb, errNoSuperblock
	}
	m := hmac.New(sha256.New, k.super[:])
	m.Write(b[:48])
	if !hmac.Equal(m.Sum(nil), b[48:80]) {
		return sb, tampered("superblock MAC mismatch")
	}
	if !bytes.Equal(b[:16], superMagic[:]) || binary.BigEndian.Uint32(b[40:]) != NodeSize ||
		binary.BigEndian.Uint32(b[44:]) != MaxEntries || !isZero(b[80:]) {
		return sb, tampered("superblock format")
	}
	copy(sb.storeID[:], b[16:32])
	sb.sectors = getU64(b[32:])
	return sb, nil
}

// anchorState is the payload of the anchor: everything needed to find and
// authenticate the committed tree.
type anchorState struct {
	storeID [16]byte
	seq     uint64 // commit sequence
	epoch   uint64 // number of commits that carried a Shred
	counter uint32 // RPMB write counter before this write
	level   uint8  // root level (tree height - 1)
	root    ref
	records uint64
}

func (a *anchorState) encode(k *deviceKeys) [storage.AnchorSize]byte {
	var nonce [chacha20poly1305.NonceSizeX]byte
	rand.Read(nonce[:])
	return a.encodeWithNonce(k, &nonce)
}

// encodeWithNonce is encode with the nonce given: the format vectors
// reproduce an anchor byte for byte.
func (a *anchorState) encodeWithNonce(k *deviceKeys, nonce *[chacha20poly1305.NonceSizeX]byte) [storage.AnchorSize]byte {
	var p [anchorPayloadLen]byte
	copy(p[0:], a.storeID[:])
	putU64(p[16:], a.seq)
	putU64(p[24:], a.epoch)
	binary.BigEndian.PutUint32(p[32:], a.counter)
	p[36] = a.level
	putU64(p[40:], a.root.loc)
	copy(p[48:], a.root.hash[:])
	copy(p[80:], a.root.key[:])
	putU64(p[112:], a.records)

	var out [storage.AnchorSize]byte
	copy(out[:], anchorMagic[:])
	copy(out[4:anchorHeader], nonce[:])
	aead, _ := chacha20poly1305.NewX(k.anchor[:])
	aead.Seal(out[anchorHeader:anchorHeader], nonce[:], p[:], adAnchor)
	clear(p[:])
	return out
}

var errEmptyAnchor = errors.New("store: anchor never written")

func decodeAnchor(b *[storage.AnchorSize]byte, k *deviceKeys) (anchorState, error) {
	var a anchorState
	if isZero(b[:]) {
		return a, errEmptyAnchor
	}
	if !bytes.Equal(b[:4], anchorMagic[:]) || !isZero(b[anchorEnd:]) {
		return a, tampered("anchor format")
	}
	aead, _ := chacha20poly1305.NewX(k.anchor[:])
	p, err := aead.Open(nil, b[4:anchorHeader], b[anchorHeader:anchorEnd], adAnchor)
	if err != nil {
		return a, tampered("anchor does not open under this device's sealing key")
	}
	defer clear(p)
	if p[36] > maxLevel || !isZero(p[37:40]) || !isZero(p[120:]) {
		return a, tampered("anchor payload format")
	}
	copy(a.storeID[:], p[0:])
	a.seq = getU64(p[16:])
	a.epoch = getU64(p[24:])
	a.counter = binary.BigEndian.Uint32(p[32:])
	a.level = p[36]
	a.root.loc = getU64(p[40:])
	copy(a.root.hash[:], p[48:])
	copy(a.root.key[:], p[80:])
	a.records = getU64(p[112:])
	return a, nil
}

// node is a tree node in memory. Clean nodes were read from the device (or
// just written), are immutable and may be shared with readers; dirty nodes
// belong to the commit being built.
type node struct {
	level uint8
	ents  []entry
	ref   ref // where it is on the device, if clean
	clean bool
}

// entry is one slot of a node: a record (leaf) or a child (internal), under
// key k (the hashed user id; for a child, a lower bound of its keys).
type entry struct {
	k     [32]byte
	ref   ref
	child *node  // internal: in-memory child, set if dirty or loaded
	rec   []byte // leaf: record to write at this commit, if dirty
	dirty bool   // leaf: rec is pending
}

func (n *node) leaf() bool { return n.level == 0 }

// search returns the index of the first entry with key >= k and whether it
// is equal.
func (n *node) search(k *[32]byte) (int, bool) {
	lo, hi := 0, len(n.ents)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(n.ents[m].k[:], k[:]) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(n.ents) && n.ents[lo].k == *k
}

// childIndex returns the child of an internal node whose range holds k: the
// last entry with key <= k, or the first.
func (n *node) childIndex(k *[32]byte) int {
	i, eq := n.search(k)
	if !eq && i > 0 {
		i--
	}
	return i
}

func nodeAD(storeID *[16]byte, loc uint64) []byte {
	ad := make([]byte, 0, len(adNode)+16+8)
	ad = append(ad, adNode...)
	ad = append(ad, storeID[:]...)
	return binary.BigEndian.AppendUint64(ad, loc)
}

// encodeNode returns the plaintext of n.
func encodeNode(n *node) []byte {
	p := make([]byte, nodePlain)
	if n.leaf() {
		p[0] = nodeKindLeaf
	} else {
		p[0] = nodeKindInternal
	}
	p[1] = n.level
	binary.BigEndian.PutUint16(p[2:], uint16(len(n.ents)))
	for i := range n.ents {
		e := &n.ents[i]
		b := p[nodeHeader+i*entrySize:]
		copy(b, e.k[:])
		putU64(b[32:], e.ref.loc)
		copy(b[40:], e.ref.hash[:])
		copy(b[72:], e.ref.key[:])
	}
	return p
}

// decodeNode parses a node plaintext. The plaintext is authenticated before
// it gets here; the checks still make a malformed node an error, not a panic.
func decodeNode(p []byte) (*node, error) {
	if len(p) != nodePlain {
		return nil, tampered("node size")
	}
	kind, level := p[0], p[1]
	count := int(binary.BigEndian.Uint16(p[2:]))
	switch {
	case kind != nodeKindLeaf && kind != nodeKindInternal,
		(kind == nodeKindLeaf) != (level == 0),
		level > maxLevel,
		count > MaxEntries,
		!isZero(p[4:nodeHeader]),
		!isZero(p[nodeHeader+count*entrySize:]):
		return nil, tampered("node format")
	}
	n := &node{level: level, ents: make([]entry, count), clean: true}
	for i := range n.ents {
		e := &n.ents[i]
		b := p[nodeHeader+i*entrySize:]
		copy(e.k[:], b)
		e.ref.loc = getU64(b[32:])
		copy(e.ref.hash[:], b[40:])
		copy(e.ref.key[:], b[72:])
		if i > 0 && bytes.Compare(n.ents[i-1].k[:], e.k[:]) >= 0 {
			return nil, tampered("node keys out of order")
		}
	}
	return n, nil
}

// sealNode encrypts a node plaintext for location loc under a fresh key and
// returns the on-disk bytes and the ref that authenticates them.
func sealNode(p []byte, storeID *[16]byte, loc uint64) ([]byte, ref) {
	return sealNodeUnder(freshKey(), p, storeID, loc)
}

// sealNodeUnder is sealNode with the block key given (the format vectors).
func sealNodeUnder(key [32]byte, p []byte, storeID *[16]byte, loc uint64) ([]byte, ref) {
	r := ref{loc: loc, key: key}
	aead, _ := chacha20poly1305.New(r.key[:])
	var nonce [chacha20poly1305.NonceSize]byte // each key seals exactly once
	out := aead.Seal(make([]byte, 0, NodeSize), nonce[:], p, nodeAD(storeID, loc))
	r.hash = sum(out)
	return out, r
}

// openNode authenticates and decrypts the on-disk bytes of the node r points
// at, and checks it sits at the expected level.
func openNode(b []byte, r *ref, storeID *[16]byte, level uint8) (*node, error) {
	if len(b) != NodeSize {
		return nil, tampered("node size")
	}
	if h := sum(b); subtle.ConstantTimeCompare(h[:], r.hash[:]) != 1 {
		return nil, tamperedf("node at sector %d does not match its hash", r.loc)
	}
	aead, _ := chacha20poly1305.New(r.key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	p, err := aead.Open(make([]byte, 0, nodePlain), nonce[:], b, nodeAD(storeID, r.loc))
	if err != nil {
		return nil, tamperedf("node at sector %d does not open", r.loc)
	}
	n, err := decodeNode(p)
	clear(p)
	if err != nil {
		return nil, err
	}
	if n.level != level {
		return nil, tamperedf("node at sector %d has level %d, want %d", r.loc, n.level, level)
	}
	n.ref = *r
	return n, nil
}

func recordAD(storeID *[16]byte, loc uint64, id *[32]byte, version uint64) []byte {
	ad := make([]byte, 0, len(adRecord)+16+8+32+8)
	ad = append(ad, adRecord...)
	ad = append(ad, storeID[:]...)
	ad = binary.BigEndian.AppendUint64(ad, loc)
	ad = append(ad, id[:]...)
	return binary.BigEndian.AppendUint64(ad, version)
}

// sealRecord seals rec, for hashed id id, written at commit version into the
// slot at loc, under a fresh key. Records are padded to MaxRecordSize, so
// every sealed record has the same size.
func sealRecord(rec []byte, storeID *[16]byte, loc uint64, id *[32]byte, version uint64) ([]byte, ref) {
	return sealRecordUnder(freshKey(), rec, storeID, loc, id, version)
}

// sealRecordUnder is sealRecord with the block key given (the format vectors).
func sealRecordUnder(key [32]byte, rec []byte, storeID *[16]byte, loc uint64, id *[32]byte, version uint64) ([]byte, ref) {
	var p [recordPlain]byte
	binary.BigEndian.PutUint16(p[:], uint16(len(rec)))
	copy(p[2:], rec)
	out := make([]byte, storage.SectorSize)
	copy(out, recordMagic[:])
	putU64(out[4:], version)
	r := ref{loc: loc, key: key}
	aead, _ := chacha20poly1305.New(r.key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	aead.Seal(out[recordHeader:recordHeader], nonce[:], p[:], recordAD(storeID, loc, id, version))
	clear(p[:])
	r.hash = sum(out)
	return out, r
}

// openRecord authenticates and decrypts the record slot r points at.
func openRecord(b []byte, r *ref, storeID *[16]byte, id *[32]byte) ([]byte, uint64, error) {
	if len(b) != storage.SectorSize {
		return nil, 0, tampered("record size")
	}
	if h := sum(b); subtle.ConstantTimeCompare(h[:], r.hash[:]) != 1 {
		return nil, 0, tamperedf("record at sector %d does not match its hash", r.loc)
	}
	if !bytes.Equal(b[:4], recordMagic[:]) || !isZero(b[recordEnd:]) {
		return nil, 0, tamperedf("record at sector %d: bad format", r.loc)
	}
	version := getU64(b[4:])
	aead, _ := chacha20poly1305.New(r.key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	p, err := aead.Open(nil, nonce[:], b[recordHeader:recordEnd], recordAD(storeID, r.loc, id, version))
	if err != nil {
		return nil, 0, tamperedf("record at sector %d does not open", r.loc)
	}
	n := int(binary.BigEndian.Uint16(p))
	if n > MaxRecordSize || !isZero(p[2+n:]) {
		clear(p)
		return nil, 0, tamperedf("record at sector %d: bad length", r.loc)
	}
	rec := append([]byte(nil), p[2:2+n]...)
	clear(p)
	return rec, version, nil
}
