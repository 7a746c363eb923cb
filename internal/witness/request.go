package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
)

// MaxRequestSize bounds an add-checkpoint body: one size line, at most
// MaxProofHashes proof lines, and a checkpoint of a few lines with its
// signatures.
const MaxRequestSize = 32 << 10

// MaxProofHashes bounds a consistency proof: a tree of 2^64 entries needs
// fewer.
const MaxProofHashes = 64

// Request is a parsed add-checkpoint body (tlog-witness):
//
//	old N
//	base64 proof hash
//	…
//	(blank line)
//	signed checkpoint
type Request struct {
	OldSize    uint64
	Proof      [][]byte
	Checkpoint []byte // the signed note, unverified
}

// ErrMalformedRequest is wrapped by every error of ParseRequest.
var ErrMalformedRequest = errors.New("witness: malformed add-checkpoint request")

// ParseRequest parses an add-checkpoint body strictly: a decimal old size
// without leading zeros, 32-byte hashes in standard base64, one blank line,
// then a non-empty checkpoint. It checks the syntax only; AddCheckpoint
// checks signatures and proofs.
func ParseRequest(body []byte) (*Request, error) {
	if len(body) > MaxRequestSize {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrMalformedRequest, len(body), MaxRequestSize)
	}
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no old size line", ErrMalformedRequest)
	}
	sizeText, found := bytes.CutPrefix(line, []byte("old "))
	if !found {
		return nil, fmt.Errorf("%w: first line is not \"old N\"", ErrMalformedRequest)
	}
	old, err := parseDecimal(sizeText)
	if err != nil {
		return nil, fmt.Errorf("%w: old size: %v", ErrMalformedRequest, err)
	}
	r := &Request{OldSize: old}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, fmt.Errorf("%w: no blank line before the checkpoint", ErrMalformedRequest)
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofHashes {
			return nil, fmt.Errorf("%w: more than %d proof hashes", ErrMalformedRequest, MaxProofHashes)
		}
		h, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil || len(h) != 32 {
			return nil, fmt.Errorf("%w: proof line %d is not a base64 32-byte hash", ErrMalformedRequest, len(r.Proof)+1)
		}
		r.Proof = append(r.Proof, h)
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint", ErrMalformedRequest)
	}
	r.Checkpoint = rest
	return r, nil
}

// parseDecimal reads a size as the spec writes it: ASCII digits, no sign,
// no leading zero except for 0 itself.
func parseDecimal(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 || len(b) > 1 && b[0] == '0' {
		return 0, fmt.Errorf("%q is not a canonical decimal", b)
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a canonical decimal", b)
		}
	}
	return strconv.ParseUint(string(b), 10, 64)
}

// Marshal encodes a request (the log's side, and tests).
func (r *Request) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", r.OldSize)
	for _, h := range r.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(r.Checkpoint)
	return b.Bytes()
}
