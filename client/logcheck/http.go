package logcheck

import (
	"context"
	"errors"
	"net/http"
	"net/url"
)

// HTTPSource is a placeholder until verif/reader's tlog-tiles reader lands:
// it serves nothing, so a client with a pinned policy and no LogSource
// refuses every vault. It has the agreed signature only.
func HTTPSource(base *url.URL, hc *http.Client) Source { return placeholder{} }

type placeholder struct{}

var errPlaceholder = errors.New("logcheck: HTTPSource is a placeholder (to be replaced by verif/reader)")

func (placeholder) Checkpoint(context.Context) ([]byte, error) { return nil, errPlaceholder }
func (placeholder) Entries(context.Context, uint64, uint64, uint64) ([][]byte, error) {
	return nil, errPlaceholder
}
