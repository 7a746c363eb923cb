package client

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The resume blob of protocol/testdata/realms/schedule/resume (written by
// gen_vectors.py, independent of this code; on the main branch), copied
// here byte for byte: the body's encoding, the key and the sealed blob with
// its fixed nonce must come out the same.
const (
	resumeVectorKey       = "4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a"
	resumeVectorVersionID = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
	resumeVectorHash      = "acf87cb267a8b005e9bec28bd12917c841460ec8003ff608627923fc26274d5c"
	resumeVectorResumeKey = "23785dece31db5f40e782ff43aa2e4e361ae883ff2608af333723c0b753c0597"
	resumeVectorBody      = "a2015820acf87cb267a8b005e9bec28bd12917c841460ec8003ff608627923fc26274d5c0283a3010102582086888a8c8e90929496989a9c9ea0a2a4a6a8aaacaeb0b2b4b6b8babcbec0c200035820a247977af92b033c85827553999cc774de8a4bce39d1dce4163fb01b346e0616a30102025820e9eceff2f5f8fbfe0105080b0e1114171a1d202326292c2f3235383b3e4144010358206dadd4d09dc961805cffdbd2870367ff46fc2663e87689758f96b55d1ee4c059a301030258204c5155595d6165696d7175797d8185898d9195999da1a5a9adb1b5b9bdc1c501035820b4c5576d5f5433c4094eebf93b171e2571f969fcc58f502e547b5dc3eaba3d0f"
	resumeVectorBlob      = "a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf5e5036178d9b22d2" +
		"a46cac84e4c4a007689e1f65366dc67fd561a5ede2f79bdb705d2fa47049cb13" +
		"4d826102b19ff3976ed62bae607453237b8c42799933315b6bf12f136dd28bfd" +
		"ce0d620dee79b6f2246b38dcca3b340b5fd48a6ac0f1c2b8f6041ed2972da4e2" +
		"8870c61fbbd454cc6ffec89405fc4ff7fc2a34e0bc1de97c2a189b34c9a386c2" +
		"24b163cc7b635301fdbbbfd23829f6a2db1b8b03cb188bebf1196e81b73be079" +
		"7ed86bedf09a5b4020a8baaf3b0722efe44e365f450ba1267c6bd94b0f487267" +
		"c108f26ab217b15fbb0e98e1c7f0d8656fe1a2cb2c659510af23a18f12da4fe0" +
		"8fcbde06f6fabca256ced080b2ab1a447d4bf710a28f8c19f8c1583e736ec4f5" +
		"58d1f1666723b1ce94"
)

func hexT(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResumeBlobVector(t *testing.T) {
	k, vid, hash := hexT(t, resumeVectorKey), hexT(t, resumeVectorVersionID), hexT(t, resumeVectorHash)
	key, err := resumeKey(k, vid)
	if err != nil || !bytes.Equal(key, hexT(t, resumeVectorResumeKey)) {
		t.Fatalf("resume key %x (%v)", key, err)
	}
	blob := hexT(t, resumeVectorBlob)
	body, err := OpenResume(blob, k, vid, hash)
	if err != nil {
		t.Fatalf("the vector's blob does not open: %v", err)
	}
	if len(body.Materials) != 3 || body.Materials[2].Index != 3 {
		t.Fatalf("body %+v", body)
	}
	enc, _ := evidenceEnc.Marshal(body)
	if !bytes.Equal(enc, hexT(t, resumeVectorBody)) {
		t.Fatalf("the body encodes as %x", enc)
	}
	again, err := SealResume(bytes.NewReader(blob[:24]), k, vid, body)
	if err != nil || !bytes.Equal(again, blob) {
		t.Fatalf("sealed with the vector's nonce: %x (%v)", again, err)
	}
	// Another key, another version, another manifest hash or one flipped
	// bit: the blob does not open, and the error says so.
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
	for name, try := range map[string]func() error{
		"another key":      func() error { _, err := OpenResume(blob, flip(k, 0), vid, hash); return err },
		"another version":  func() error { _, err := OpenResume(blob, k, flip(vid, 0), hash); return err },
		"another manifest": func() error { _, err := OpenResume(blob, k, vid, flip(hash, 31)); return err },
		"a flipped bit":    func() error { _, err := OpenResume(flip(blob, 40), k, vid, hash); return err },
		"truncated":        func() error { _, err := OpenResume(blob[:30], k, vid, hash); return err },
	} {
		if err := try(); !errors.Is(err, ErrBadResume) || !strings.Contains(err.Error(), "does not open") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
