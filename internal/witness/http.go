package witness

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ServeHTTP serves POST /add-checkpoint (tlog-witness). A refusal carries
// its status and a one-line reason; a 409 for a wrong old size carries the
// size the witness knows, as text/x.tlog.size, so an honest log can retry.
func (w *Witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/add-checkpoint" {
		http.NotFound(rw, r)
		return
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "add-checkpoint takes POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxRequestSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(rw, fmt.Sprintf("request over %d bytes", MaxRequestSize), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(rw, "reading the request failed", http.StatusBadRequest)
		return
	}
	cosig, err := w.AddCheckpoint(body)
	var e *Error
	switch {
	case err == nil:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write(cosig)
	case errors.As(err, &e) && e.HasSize:
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintf(rw, "%d\n", e.Size)
	case errors.As(err, &e):
		http.Error(rw, e.Error(), e.Status)
	default:
		http.Error(rw, err.Error(), http.StatusInternalServerError)
	}
}
