package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/cofferhsm/coffer/internal/atomicfile"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// stateVersion is the state file's format.
const stateVersion = 1

// state is what the monitor keeps between runs: its verified view of the
// log (so each run reads only what was added, and a log that forks or
// rolls back is caught), the catalog of everything it has seen (so that
// `vaults` lists every identity without rereading the log), and the
// releases whose rebuild could not run yet, retried on every run.
type state struct {
	Version     int                  `json:"version"`
	View        releaselog.View      `json:"view"`
	Checkpoint  string               `json:"checkpoint,omitempty"` // the last verified checkpoint, as signed
	Releases    []loggedRelease      `json:"releases,omitempty"`
	Identities  []loggedIdentity     `json:"identities,omitempty"`
	Revocations []loggedRevocation   `json:"revocations,omitempty"`
	Pending     []uint64             `json:"pending_rebuilds,omitempty"` // indexes into the log of releases not yet rebuilt
	Results     map[uint64]rebuildOK `json:"rebuilt,omitempty"`          // index -> outcome of its rebuild
}

type loggedRelease struct {
	Index   uint64             `json:"index"`
	Release releaselog.Release `json:"release"`
}

type loggedIdentity struct {
	Index  uint64                  `json:"index"`
	Signed protocol.SignedIdentity `json:"signed"`
}

type loggedRevocation struct {
	Index      uint64                `json:"index"`
	Revocation releaselog.Revocation `json:"revocation"`
}

// rebuildOK is a finished rebuild: whether every image matched.
type rebuildOK struct {
	Match bool   `json:"match"`
	Note  string `json:"note,omitempty"`
}

// loadState reads the state file; a missing file is a monitor that has
// seen nothing yet.
func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &state{Version: stateVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state file %s: version %d, want %d", path, st.Version, stateVersion)
	}
	if uint64(len(st.Releases)+len(st.Identities)+len(st.Revocations)) != st.View.Size {
		return nil, fmt.Errorf("state file %s: %d entries cataloged for a view of %d", path, len(st.Releases)+len(st.Identities)+len(st.Revocations), st.View.Size)
	}
	return &st, nil
}

// save replaces the state file whole (a crash leaves the old or the new).
func (st *state) save(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'))
}

func (st *state) release(index uint64) *releaselog.Release {
	for i := range st.Releases {
		if st.Releases[i].Index == index {
			return &st.Releases[i].Release
		}
	}
	return nil
}
