package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressBar draws "label [#####     ]  45%  1.2 GiB / 2.6 GiB  310 MiB/s"
// on a terminal, at most five times a second, from another goroutine.
type progressBar struct {
	w     io.Writer
	label string
	total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// newProgress starts a bar, or returns nil (a valid, silent bar) when
// progress bars are off.
func (c *cli) newProgress(label string, total int64) *progressBar {
	if !c.progress {
		return nil
	}
	p := &progressBar{w: c.stderr, label: label, total: total, start: time.Now(), stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

// Add counts n more bytes.
func (p *progressBar) Add(n int64) {
	if p != nil {
		p.done.Add(n)
	}
}

// Finish draws the final state and ends the line.
func (p *progressBar) Finish() {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.draw()
	fmt.Fprintln(p.w)
}

func (p *progressBar) draw() {
	const width = 30
	done := p.done.Load()
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	n := int(frac * width)
	rate := float64(done) / max(time.Since(p.start).Seconds(), 0.001)
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%%  %s / %s  %s/s ", p.label, strings.Repeat("#", n), strings.Repeat(" ", width-n),
		100*frac, size(done), size(p.total), size(int64(rate)))
}

func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// countingReader counts what is read through it into a bar, and stops
// with the context (an interrupt), so that the restore cleans up.
type countingReader struct {
	ctx context.Context
	r   io.Reader
	p   *progressBar
}

func (c countingReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(b)
	c.p.Add(int64(n))
	return n, err
}

// ctxWriter stops a backup with the context (an interrupt), so that the
// partial output is removed.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(b)
}
