package devenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/schemas"
)

// Confluent's error codes for the answers this file writes.
const (
	codeSubjectNotFound       = 40401
	codeVersionNotFound       = 40402
	codeSubjectLevelNotSet    = 40408
	codeIncompatible          = 409
	codeInvalidSchema         = 42201
	codeInvalidVersion        = 42202
	codeInvalidCompatibility  = 42203
	codeStoreError            = 50001
	maxReferenceDepth         = 32
	maxRegistryRequestBodyLen = 1 << 20
)

// Handler is the registry's HTTP API: the routes ordo adds or replaces, and
// srfake's handler for everything else (writes serialized and saved).
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /subjects/{subject}/versions", r.handleRegister)
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions/{version}", r.handleTestCompatibility)
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions", r.handleTestCompatibility)
	mux.HandleFunc("GET /config", r.handleGetConfig)
	mux.HandleFunc("PUT /config", r.handlePutConfig)
	mux.HandleFunc("DELETE /config", r.handleDeleteConfig)
	mux.HandleFunc("GET /config/{subject}", r.handleGetConfig)
	mux.HandleFunc("PUT /config/{subject}", r.handlePutConfig)
	mux.HandleFunc("DELETE /config/{subject}", r.handleDeleteConfig)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			r.inner.ServeHTTP(w, req)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.inner.ServeHTTP(w, req)
		r.saveLogged()
	})
	return mux
}

func (r *Registry) saveLogged() {
	if err := r.saveLocked(); err != nil {
		r.log.Error("saving the schema registry failed", "file", r.file, "err", err)
	}
}

// apiError is an error answer in Confluent's format.
type apiError struct {
	status, code int
	msg          string
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error_code": e.code, "message": e.msg})
}

// call runs a request through srfake's handler in-process and decodes a
// 200 answer into into; it returns the status and the raw body.
func (r *Registry) call(method, path string, body []byte, into any) (int, string) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	r.inner.ServeHTTP(rec, req)
	if rec.Code == http.StatusOK && into != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), into); err != nil {
			return http.StatusInternalServerError, err.Error()
		}
	}
	return rec.Code, rec.Body.String()
}

func subjectPath(subject string) string { return "/subjects/" + url.PathEscape(subject) }

// handleRegister is POST /subjects/{subject}/versions: an Avro schema must
// parse and pass the subject's compatibility level before srfake stores it.
func (r *Registry) handleRegister(w http.ResponseWriter, req *http.Request) {
	subject := req.PathValue("subject")
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxRegistryRequestBodyLen))
	if err != nil {
		writeAPIError(w, &apiError{http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid request body: " + err.Error()})
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.admit(subject, body); e != nil {
		writeAPIError(w, e)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.inner.ServeHTTP(w, req)
	r.saveLogged()
}

// admit decides whether body may be registered under subject; nil lets
// srfake handle it (which also answers malformed requests its own way).
func (r *Registry) admit(subject string, body []byte) *apiError {
	var sch sr.Schema
	if err := json.Unmarshal(body, &sch); err != nil || sch.Type != sr.TypeAvro {
		return nil
	}
	// Registering a schema the subject already has returns its id, as in
	// Confluent, whatever the level says.
	if code, _ := r.call(http.MethodPost, subjectPath(subject), body, nil); code == http.StatusOK {
		return nil
	}
	next, e := r.parse(sch)
	if e != nil {
		return e
	}
	level := r.levelLocked(subject)
	if level == sr.CompatNone {
		return nil
	}
	prev, texts, _, e := r.versions(subject)
	if e != nil {
		return e
	}
	found := schemas.CheckCompatibility(level, next, prev)
	if len(found) == 0 {
		return nil
	}
	details := confluentDetails(found, texts, level)
	return &apiError{http.StatusConflict, codeIncompatible, fmt.Sprintf(
		"Schema being registered is incompatible with an earlier schema for subject %q, details: [%s]", subject, strings.Join(details, ", "))}
}

// confluentDetails lists the findings the way Confluent's 409 message and
// verbose compatibility answer do: each incompatibility, then the version
// it was found against, its schema and the level.
func confluentDetails(found []schemas.Incompatibility, texts map[int]string, level sr.CompatibilityLevel) []string {
	out := make([]string, 0, len(found)+3)
	for _, in := range found {
		out = append(out, in.ConfluentDetail())
	}
	v := found[0].Version
	old := texts[v]
	var buf bytes.Buffer
	if json.Compact(&buf, []byte(old)) == nil {
		old = buf.String()
	}
	return append(out, fmt.Sprintf("{oldSchemaVersion: %d}", v), fmt.Sprintf("{oldSchema: '%s'}", old), fmt.Sprintf("{compatibility: '%s'}", level))
}

// parse parses a submitted Avro schema with its references' named types.
func (r *Registry) parse(sch sr.Schema) (*schemas.Schema, *apiError) {
	refs, err := r.referenceTexts(sch.References, 0)
	if err != nil {
		return nil, &apiError{http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: " + err.Error()}
	}
	s, err := schemas.ParseSchemaWithReferences(0, sch.Schema, refs)
	if err == nil {
		err = s.CheckDefaults()
	}
	if err != nil {
		return nil, &apiError{http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: " + err.Error()}
	}
	return s, nil
}

// referenceTexts fetches the referenced versions, each expanded with its
// own references, for schemas.ExpandReferences.
func (r *Registry) referenceTexts(refs []sr.SchemaReference, depth int) ([]string, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	if depth > maxReferenceDepth {
		return nil, fmt.Errorf("references nest deeper than %d levels", maxReferenceDepth)
	}
	out := make([]string, 0, len(refs))
	for _, ref := range refs {
		var ss sr.SubjectSchema
		path := subjectPath(ref.Subject) + "/versions/" + strconv.Itoa(ref.Version)
		if code, _ := r.call(http.MethodGet, path, nil, &ss); code != http.StatusOK {
			return nil, fmt.Errorf("reference %q: subject %q version %d not found (fix: register it first, then reference the version it got)", ref.Name, ref.Subject, ref.Version)
		}
		if ss.Type != sr.TypeAvro {
			return nil, fmt.Errorf("reference %q: subject %q version %d is %s, not Avro", ref.Name, ref.Subject, ref.Version, ss.Type)
		}
		sub, err := r.referenceTexts(ss.References, depth+1)
		if err != nil {
			return nil, err
		}
		exp, _, err := schemas.ExpandReferences(ss.Schema.Schema, sub)
		if err != nil {
			return nil, fmt.Errorf("reference %q: %w", ref.Name, err)
		}
		out = append(out, exp)
	}
	return out, nil
}

// versions returns subject's active Avro versions, oldest first, parsed,
// with their texts by version; exists is false for an unknown subject.
func (r *Registry) versions(subject string) (prev []schemas.Version, texts map[int]string, exists bool, e *apiError) {
	var nums []int
	code, body := r.call(http.MethodGet, subjectPath(subject)+"/versions", nil, &nums)
	if code == http.StatusNotFound {
		return nil, nil, false, nil
	}
	if code != http.StatusOK {
		return nil, nil, false, &apiError{http.StatusInternalServerError, codeStoreError, "list versions: " + body}
	}
	texts = map[int]string{}
	for _, v := range nums {
		var ss sr.SubjectSchema
		if code, body := r.call(http.MethodGet, fmt.Sprintf("%s/versions/%d", subjectPath(subject), v), nil, &ss); code != http.StatusOK {
			return nil, nil, true, &apiError{http.StatusInternalServerError, codeStoreError, fmt.Sprintf("read version %d: %s", v, body)}
		}
		if ss.Type != sr.TypeAvro {
			continue
		}
		s, err := r.parsedByID(ss)
		if err != nil {
			return nil, nil, true, &apiError{http.StatusInternalServerError, codeStoreError, fmt.Sprintf(
				"version %d of subject %q (id %d) is not a usable Avro schema: %v (fix: delete it: DELETE /subjects/%s/versions/%d)", v, subject, ss.ID, err, subject, v)}
		}
		prev = append(prev, schemas.Version{Version: v, Schema: s})
		texts[v] = ss.Schema.Schema
	}
	return prev, texts, true, nil
}

func (r *Registry) parsedByID(ss sr.SubjectSchema) (*schemas.Schema, error) {
	if v, ok := r.parsed.Load(ss.ID); ok {
		return v.(*schemas.Schema), nil
	}
	refs, err := r.referenceTexts(ss.References, 0)
	if err != nil {
		return nil, err
	}
	s, err := schemas.ParseSchemaWithReferences(ss.ID, ss.Schema.Schema, refs)
	if err != nil {
		return nil, err
	}
	v, _ := r.parsed.LoadOrStore(ss.ID, s)
	return v.(*schemas.Schema), nil
}

// handleTestCompatibility is POST /compatibility/subjects/{s}/versions/{v}
// (against that version, in the directions of the subject's level) and
// POST /compatibility/subjects/{s}/versions (against the versions the
// level covers). ?verbose=true adds the reasons.
func (r *Registry) handleTestCompatibility(w http.ResponseWriter, req *http.Request) {
	subject, version := req.PathValue("subject"), req.PathValue("version")
	verbose := req.URL.Query().Get("verbose") == "true"
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxRegistryRequestBodyLen))
	var sch sr.Schema
	if err == nil {
		err = json.Unmarshal(body, &sch)
	}
	if err != nil {
		writeAPIError(w, &apiError{http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid request body: " + err.Error()})
		return
	}
	if sch.Type != sr.TypeAvro {
		writeAPIError(w, &apiError{http.StatusUnprocessableEntity, codeInvalidSchema, fmt.Sprintf("ordo's registry checks only Avro schemas, not %s", sch.Type)})
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next, e := r.parse(sch)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	level := r.levelLocked(subject)
	prev, texts, exists, e := r.versions(subject)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	switch version {
	case "": // every version the level covers
	case "latest", "-1":
		if len(prev) > 0 {
			prev = prev[len(prev)-1:]
		}
	default:
		n, err := strconv.Atoi(version)
		if err != nil || n < 1 {
			writeAPIError(w, &apiError{http.StatusUnprocessableEntity, codeInvalidVersion, fmt.Sprintf("The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", version)})
			return
		}
		if !exists {
			writeAPIError(w, &apiError{http.StatusNotFound, codeSubjectNotFound, fmt.Sprintf("Subject '%s' not found.", subject)})
			return
		}
		var one []schemas.Version
		for _, p := range prev {
			if p.Version == n {
				one = append(one, p)
			}
		}
		if len(one) == 0 {
			writeAPIError(w, &apiError{http.StatusNotFound, codeVersionNotFound, fmt.Sprintf("Version %d not found.", n)})
			return
		}
		prev = one
	}
	found := schemas.CheckCompatibility(level, next, prev)
	out := map[string]any{"is_compatible": len(found) == 0}
	if verbose {
		msgs := []string{}
		if len(found) > 0 {
			msgs = confluentDetails(found, texts, level)
		}
		out["messages"] = msgs
	}
	writeJSON(w, http.StatusOK, out)
}

func invalidLevel(s string) *apiError {
	return &apiError{http.StatusUnprocessableEntity, codeInvalidCompatibility, fmt.Sprintf(
		"Invalid compatibility level %q. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive", s)}
}

func (r *Registry) handleGetConfig(w http.ResponseWriter, req *http.Request) {
	subject := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	if subject == "" {
		writeJSON(w, http.StatusOK, map[string]string{"compatibilityLevel": r.global.String()})
		return
	}
	if l, ok := r.levels[subject]; ok {
		writeJSON(w, http.StatusOK, map[string]string{"compatibilityLevel": l.String()})
		return
	}
	// As in Confluent: the global level only when asked for.
	if req.URL.Query().Get("defaultToGlobal") == "true" {
		writeJSON(w, http.StatusOK, map[string]string{"compatibilityLevel": r.global.String()})
		return
	}
	writeAPIError(w, &apiError{http.StatusNotFound, codeSubjectLevelNotSet, fmt.Sprintf(
		"Subject '%s' does not have subject-level compatibility configured", subject)})
}

func (r *Registry) handlePutConfig(w http.ResponseWriter, req *http.Request) {
	subject := req.PathValue("subject")
	var body struct {
		Compatibility string `json:"compatibility"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 1<<16))
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil {
		writeAPIError(w, &apiError{http.StatusUnprocessableEntity, codeInvalidCompatibility, "Invalid config request body: " + err.Error()})
		return
	}
	var level sr.CompatibilityLevel
	if err := level.UnmarshalText([]byte(body.Compatibility)); err != nil {
		writeAPIError(w, invalidLevel(body.Compatibility))
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if subject == "" {
		r.global = level
	} else {
		r.levels[subject] = level
	}
	r.saveLogged()
	writeJSON(w, http.StatusOK, map[string]string{"compatibility": level.String()})
}

func (r *Registry) handleDeleteConfig(w http.ResponseWriter, req *http.Request) {
	subject := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	var was sr.CompatibilityLevel
	if subject == "" {
		was, r.global = r.global, sr.CompatBackward
	} else {
		l, ok := r.levels[subject]
		if !ok {
			writeAPIError(w, &apiError{http.StatusNotFound, codeSubjectLevelNotSet, fmt.Sprintf(
				"Subject '%s' does not have subject-level compatibility configured", subject)})
			return
		}
		was = l
		delete(r.levels, subject)
	}
	r.saveLogged()
	writeJSON(w, http.StatusOK, map[string]string{"compatibilityLevel": was.String()})
}
