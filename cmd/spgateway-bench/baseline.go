package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gin-gonic/gin"
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/spgateway/spgateway/gateway/store"
)

// The baseline server's routes.
const (
	baselineIntakePath = "/baseline/intake"
	baselineHelloPath  = "/baseline/hello"
)

// baseline is the floor the gateway is measured against: the least a gin
// service can do for a referral (parse its ServiceRequest with the FHIR
// models, insert one row into SQLite in a transaction, on one writer
// connection like the gateway's) and for any request at all (hello world).
type baseline struct {
	db          *sql.DB
	checkpoints io.Closer // the store's checkpointer, as its writer does not checkpoint
}

// newBaseline opens a fresh SQLite database in dir.
func newBaseline(dir string) (*baseline, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	var mark [4]byte
	if _, err := rand.Read(mark[:]); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "baseline-"+hex.EncodeToString(mark[:])+".db")
	// The store's writer connection, options and all, with the store's
	// checkpointer beside it (gateway/store), so that the baseline pays
	// what the gateway pays for a durable insert; and one of it, as SQLite
	// has one write lock.
	db, err := sql.Open("sqlite", store.SQLiteWriterDSN(path))
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS referrals (
		id TEXT PRIMARY KEY, identifier TEXT NOT NULL, status TEXT NOT NULL, resource BLOB NOT NULL, created_at TEXT NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("baseline: %w", err)
	}
	checkpoints, err := store.SQLiteCheckpointer(path)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("baseline: %w", err)
	}
	return &baseline{db: db, checkpoints: checkpoints}, nil
}

// Close stops the checkpointer, then closes the database, as the store
// does: its last connection checkpoints what is left.
func (b *baseline) Close() error { return errors.Join(b.checkpoints.Close(), b.db.Close()) }

// Handler is the baseline's router: gin with no middleware, as the gateway
// builds its own.
func (b *baseline) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET(baselineHelloPath, func(c *gin.Context) { c.String(http.StatusOK, "hello, world") })
	r.POST(baselineIntakePath, b.intake)
	return r
}

// intake parses a referral Bundle and its ServiceRequest with the FHIR
// models and inserts one row.
func (b *baseline) intake(c *gin.Context) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
	if err != nil {
		c.String(http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	sr, raw, err := serviceRequestOf(body)
	if err != nil {
		c.String(http.StatusBadRequest, err.Error())
		return
	}
	var identifier string
	if len(sr.Identifier) > 0 && sr.Identifier[0].Value != nil {
		identifier = *sr.Identifier[0].Value
	}
	var mark [16]byte
	if _, err := rand.Read(mark[:]); err != nil {
		c.String(http.StatusInternalServerError, err.Error())
		return
	}
	id := hex.EncodeToString(mark[:])
	if err := b.insert(c.Request.Context(), id, identifier, sr.Status.Code(), raw); err != nil {
		c.String(http.StatusInternalServerError, err.Error())
		return
	}
	c.Data(http.StatusCreated, "application/json", []byte(`{"id":"`+id+`"}`))
}

func (b *baseline) insert(ctx context.Context, id, identifier, status string, resource []byte) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO referrals (id, identifier, status, resource, created_at) VALUES (?, ?, ?, ?, ?)`,
		id, identifier, status, resource, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	return tx.Commit()
}

// serviceRequestOf finds the ServiceRequest of a transaction Bundle and
// parses it.
func serviceRequestOf(body []byte) (r4.ServiceRequest, []byte, error) {
	bundle, err := r4.UnmarshalBundle(body)
	if err != nil {
		return r4.ServiceRequest{}, nil, fmt.Errorf("bundle: %w", err)
	}
	for _, e := range bundle.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil || head.ResourceType != "ServiceRequest" {
			continue
		}
		sr, err := r4.UnmarshalServiceRequest(e.Resource)
		if err != nil {
			return r4.ServiceRequest{}, nil, fmt.Errorf("service request: %w", err)
		}
		return sr, e.Resource, nil
	}
	return r4.ServiceRequest{}, nil, errors.New("the Bundle holds no ServiceRequest")
}

// startBaseline serves a baseline on a loopback port until stop is called.
func startBaseline(dir string) (root string, stop func(), err error) {
	b, err := newBaseline(dir)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		return "", nil, err
	}
	srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		srv.Close()
		b.Close()
	}, nil
}
