// Package devenv runs ordo's embedded infrastructure for `ordo dev` and
// tests: an in-process Kafka-protocol broker (franz-go kfake) and a
// Confluent-compatible schema registry (franz-go srfake) on real loopback
// listeners, both persisted under a data directory so a restart keeps the
// data.
package devenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Kafka starts kfake on addr (host:port) persisting to dir ("" = memory
// only). Close the returned cluster to stop it.
func Kafka(addr, dir string) (*kfake.Cluster, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kafka address %q: %w (fix: write host:port, e.g. 127.0.0.1:9092)", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("kafka address %q: bad port", addr)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ClusterID("ordo-dev"),
		kfake.DefaultNumPartitions(3),
		// kfake always listens on 127.0.0.1; honour another host.
		kfake.ListenFn(func(network, a string) (net.Listener, error) {
			_, p, _ := net.SplitHostPort(a)
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("kafka data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on %s: %w (fix: stop whatever uses the port, or pass --kafka-addr)", addr, err)
	}
	return c, nil
}

// Registry is srfake served on a real listener, persisted to a JSON file.
type Registry struct {
	reg  *srfake.Registry
	srv  *http.Server
	ln   net.Listener
	file string
	log  *slog.Logger
	mu   sync.Mutex // serializes saves
	wg   sync.WaitGroup
}

type persisted struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
	Type    string `json:"type,omitempty"`
}

// StartRegistry serves a schema registry on addr. When file is not empty,
// schemas are reloaded from it with their ids and saved after every change.
func StartRegistry(addr, file string, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Registry{reg: srfake.New(), file: file, log: log}
	if file != "" {
		if err := r.load(); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start schema registry on %s: %w (fix: stop whatever uses the port, or pass --registry-addr)", addr, err)
	}
	r.ln = ln
	inner := r.reg.Handler()
	r.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		inner.ServeHTTP(w, req)
		if req.Method != http.MethodGet && r.file != "" {
			if err := r.save(); err != nil {
				r.log.Error("saving the schema registry failed", "file", r.file, "err", err)
			}
		}
	})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("schema registry stopped", "err", err)
		}
	}()
	return r, nil
}

// URL is the registry's base URL.
func (r *Registry) URL() string { return "http://" + r.ln.Addr().String() }

// Fake gives direct access to the in-memory registry (tests).
func (r *Registry) Fake() *srfake.Registry { return r.reg }

// Close stops serving and saves.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	r.wg.Wait()
	if r.file != "" {
		err = errors.Join(err, r.save())
	}
	return err
}

func (r *Registry) load() error {
	data, err := os.ReadFile(r.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load schema registry: %w", err)
	}
	var all []persisted
	if err := json.Unmarshal(data, &all); err != nil {
		return fmt.Errorf("load schema registry %s: %w (fix: delete the file to start empty)", r.file, err)
	}
	for _, p := range all {
		t := sr.TypeAvro
		if p.Type != "" {
			_ = t.UnmarshalText([]byte(p.Type))
		}
		r.reg.SeedSchema(p.Subject, p.Version, p.ID, sr.Schema{Schema: p.Schema, Type: t})
	}
	return nil
}

// save writes every subject version, read through the registry's own
// handler in-process (so it works while the listener is closing).
func (r *Registry) save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := httptest.NewRecorder()
	r.reg.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/schemas", nil))
	if rec.Code != http.StatusOK {
		return fmt.Errorf("list schemas: HTTP %d: %s", rec.Code, rec.Body.String())
	}
	var all []sr.SubjectSchema
	if err := json.Unmarshal(rec.Body.Bytes(), &all); err != nil {
		return fmt.Errorf("list schemas: %w", err)
	}
	out := make([]persisted, 0, len(all))
	for _, s := range all {
		typ, _ := s.Type.MarshalText()
		out = append(out, persisted{Subject: s.Subject, Version: s.Version, ID: s.ID, Schema: s.Schema.Schema, Type: string(typ)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.file), 0o755); err != nil {
		return err
	}
	tmp := r.file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, r.file)
}
