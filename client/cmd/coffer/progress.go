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

// progressBar draws
// "label [#####     ]  45%  1.2 GiB / 2.6 GiB  310 MiB/s  ETA 0:04"
// on a terminal, at most five times a second, from another goroutine, and
// clears its line when done.
type progressBar struct {
	w     io.Writer
	label string
	total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex // the line: drawing, clearing, printing over it
	drawn bool
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

// Interrupt runs print (which writes whole lines) with the bar's line
// cleared; the bar comes back at its next tick.
func (p *progressBar) Interrupt(print func()) {
	if p == nil {
		print()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	print()
}

// Finish stops the bar and clears its line, so that what follows is
// printed on a clean line.
func (p *progressBar) Finish() {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

// clear erases the bar's line (carriage return, ANSI erase to end of
// line); the caller holds mu.
func (p *progressBar) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

func (p *progressBar) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r"+p.line(p.done.Load(), time.Since(p.start))+"\x1b[K")
	p.drawn = true
}

// line is the bar after elapsed with done bytes of total.
func (p *progressBar) line(done int64, elapsed time.Duration) string {
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	n := int(frac * width)
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	s := fmt.Sprintf("%s [%s%s] %3.0f%%  %s / %s  %s/s", p.label, strings.Repeat("#", n), strings.Repeat(" ", width-n),
		100*frac, size(done), size(p.total), size(int64(rate)))
	if done > 0 && done < p.total {
		s += "  ETA " + eta(time.Duration(float64(p.total-done)/rate*float64(time.Second)))
	}
	return s
}

// eta is a remaining time as M:SS, or H:MM:SS from an hour.
func eta(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
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
