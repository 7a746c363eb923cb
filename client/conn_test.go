package client

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
)

// The vault (its Trusted OS) may answer that a request's outcome is unknown:
// it took the request and its reply was lost. For a login start that means a
// guess may have been counted, and the user must be told so, never that the
// vault was merely busy.
func TestOutcomeUnknownIsExplained(t *testing.T) {
	for _, tc := range []struct {
		step protocol.Type
		want string
	}{
		{protocol.TypeLoginStart, "the attempt may have been counted"},
		{protocol.TypeLoginFinish, "the login may have completed"},
	} {
		t.Run(tc.step.String(), func(t *testing.T) {
			f := newFixture(t, fakehost.Options{})
			f.register("pw", 0)
			f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
				if typ != tc.step {
					return false
				}
				f.host.Vault(r.Context(), body) // the vault acts; its reply is lost
				w.Write(protocol.EncodeError(protocol.Errorf(protocol.CodeOutcomeUnknown, "reply lost")))
				return true
			})
			_, err := f.login("pw")
			if !errors.Is(err, &protocol.Error{Code: protocol.CodeOutcomeUnknown}) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v", err)
			}
			if n := f.host.Counts()[tc.step]; n != 1 {
				t.Errorf("%d %s requests sent: the client retried", n, tc.step)
			}
		})
	}
}
