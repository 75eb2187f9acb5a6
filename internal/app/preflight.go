package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"gopkg.in/yaml.v3"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ordo-dev/ordo/internal/config"
)

// preflightTimeout bounds the start-time checks. An unreachable cluster is
// not an error (the pipeline waits for it), so this is also the longest a
// broker outage can delay the start.
const preflightTimeout = 10 * time.Second

// PreflightError is a start-time failure that retrying cannot fix: the
// TLS handshake, SASL authentication or an ACL. Problems lists each
// resource with what is missing and the fix.
type PreflightError struct {
	Principal string // e.g. User:ordo ("" without SASL)
	Brokers   []string
	Problems  []string
}

func (e *PreflightError) Error() string {
	who := "ordo"
	if e.Principal != "" {
		who = e.Principal
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "kafka preflight as %s on %s failed (see docs/security.md):", who, strings.Join(e.Brokers, ","))
	for _, p := range e.Problems {
		sb.WriteString("\n  - ")
		sb.WriteString(p)
	}
	return sb.String()
}

// preflight connects once with ordo's own credentials and checks what would
// otherwise only show up as endless retries: the TLS handshake, SASL
// authentication, and the ACLs docs/security.md lists (READ on the inputs
// and the group, WRITE on the outputs and the dead-letter topic, the
// transactional id). Definitive failures are returned as a *PreflightError
// naming each resource and its fix. An unreachable cluster or an older
// broker that cannot answer a check is only logged: a broker outage is
// transient and the pipeline waits it out.
func preflight(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	s := cfg.Kafka.SASL
	pe := &PreflightError{Brokers: cfg.Kafka.Brokers}
	if u := principalUser(cfg); u != "" {
		pe.Principal = "User:" + u
	}
	if strings.EqualFold(s.Mechanism, "PLAIN") && !cfg.Kafka.TLS.Enabled {
		log.Warn("kafka.sasl.mechanism PLAIN without kafka.tls sends the password in clear text", "fix", "enable kafka.tls or use SCRAM-SHA-512")
	}
	kopts, err := clientOpts(cfg)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(kopts, kgo.DialTimeout(5*time.Second), kgo.RequestRetries(2), kgo.RetryTimeout(preflightTimeout))...)
	if err != nil {
		return err
	}
	defer cl.Close()

	inputs := cfg.Inputs
	outputs := outputTopics(cfg)
	var topics []string
	for _, t := range slices.Concat(inputs, outputs, []string{cfg.DeadLetter}) {
		if t != "" && !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}

	// 1. Connect, TLS, SASL; topic DESCRIBE/READ/WRITE from the authorized
	//    operations of a Metadata answer (KIP-430).
	req := kmsg.NewPtrMetadataRequest()
	req.IncludeTopicAuthorizedOperations = true
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	// A broker that closes every connection at once usually speaks another
	// protocol (TLS vs plaintext, SASL); once can be a restart: ask again.
	for i := 0; i < 3 && isFirstReadEOF(err); i++ {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			resp, err = req.RequestWith(ctx, cl)
		}
	}
	if err != nil {
		if p, fatal := connectProblem(cfg, err); fatal {
			pe.Problems = append(pe.Problems, p)
			return pe
		}
		log.Warn("kafka preflight: cannot reach the brokers yet; starting anyway, the client retries", "brokers", cfg.Kafka.Brokers, "err", err)
		return nil
	}
	who := pe.Principal
	if who == "" {
		who = "ordo's principal"
	}
	slices.SortFunc(resp.Topics, func(a, b kmsg.MetadataResponseTopic) int { return strings.Compare(deref(a.Topic), deref(b.Topic)) })
	for _, rt := range resp.Topics {
		name := ""
		if rt.Topic != nil {
			name = *rt.Topic
		}
		role, need := topicRole(cfg, name, outputs)
		switch err := kerr.ErrorForCode(rt.ErrorCode); {
		case errors.Is(err, kerr.TopicAuthorizationFailed):
			pe.Problems = append(pe.Problems, fmt.Sprintf("TOPIC_AUTHORIZATION_FAILED: topic %s (%s): %s may not even DESCRIBE it; fix: %s", name, role, who, aclFix(cfg, need, "--topic "+name)))
			continue
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			log.Warn("kafka preflight: topic does not exist (yet)", "topic", name, "role", role, "fix", "create it, or run with --create-topics")
			continue
		case err != nil:
			log.Warn("kafka preflight: topic metadata error", "topic", name, "err", err)
			continue
		}
		if rt.AuthorizedOperations == math.MinInt32 { // not reported by this broker
			continue
		}
		for _, op := range need {
			if rt.AuthorizedOperations&(1<<int(op)) == 0 {
				pe.Problems = append(pe.Problems, fmt.Sprintf("TOPIC_AUTHORIZATION_FAILED: topic %s (%s): %s is not allowed to %s it; fix: %s",
					name, role, who, opName(op), aclFix(cfg, []kmsg.ACLOperation{op}, "--topic "+name)))
			}
		}
	}

	// 2. The group: READ (JoinGroup, offset commits in the transaction).
	greq := kmsg.NewPtrDescribeGroupsRequest()
	greq.Groups = []string{cfg.Kafka.Group}
	greq.IncludeAuthorizedOperations = true
	for _, sh := range cl.RequestSharded(ctx, greq) {
		if sh.Err != nil {
			if errors.Is(sh.Err, kerr.GroupAuthorizationFailed) {
				pe.Problems = append(pe.Problems, groupProblem(cfg, who))
			} else {
				notChecked(log, "group", cfg.Kafka.Group, sh.Err)
			}
			continue
		}
		for _, g := range sh.Resp.(*kmsg.DescribeGroupsResponse).Groups {
			err := kerr.ErrorForCode(g.ErrorCode)
			switch {
			case errors.Is(err, kerr.GroupAuthorizationFailed):
				pe.Problems = append(pe.Problems, groupProblem(cfg, who))
			case err != nil:
				notChecked(log, "group", cfg.Kafka.Group, err)
			case g.AuthorizedOperations != math.MinInt32 && g.AuthorizedOperations&(1<<int(kmsg.ACLOperationRead)) == 0:
				pe.Problems = append(pe.Problems, groupProblem(cfg, who))
			}
		}
	}

	// 3. The transactional id: DESCRIBE is all a check can ask without
	//    initializing a producer (which would fence a live replica); the
	//    WRITE ACL that docs/security.md lists implies it.
	treq := kmsg.NewPtrDescribeTransactionsRequest()
	treq.TransactionalIDs = []string{cfg.TransactionalID()}
	for _, sh := range cl.RequestSharded(ctx, treq) {
		if sh.Err != nil {
			if errors.Is(sh.Err, kerr.TransactionalIDAuthorizationFailed) {
				pe.Problems = append(pe.Problems, txnProblem(cfg, who))
			} else {
				notChecked(log, "transactional id", cfg.TransactionalID(), sh.Err)
			}
			continue
		}
		for _, st := range sh.Resp.(*kmsg.DescribeTransactionsResponse).TransactionStates {
			if errors.Is(kerr.ErrorForCode(st.ErrorCode), kerr.TransactionalIDAuthorizationFailed) {
				pe.Problems = append(pe.Problems, txnProblem(cfg, who))
			}
		}
	}
	if len(pe.Problems) > 0 {
		return pe
	}
	log.Info("kafka preflight ok", "brokers", cfg.Kafka.Brokers, "principal", pe.Principal, "tls", cfg.Kafka.TLS.Enabled, "topics", len(topics), "group", cfg.Kafka.Group, "transactional_id", cfg.TransactionalID())
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func groupProblem(cfg *config.Config, who string) string {
	return fmt.Sprintf("GROUP_AUTHORIZATION_FAILED: group %s (kafka.group): %s is not allowed to READ it; fix: %s",
		cfg.Kafka.Group, who, aclFix(cfg, []kmsg.ACLOperation{kmsg.ACLOperationRead}, "--group "+cfg.Kafka.Group))
}

func txnProblem(cfg *config.Config, who string) string {
	return fmt.Sprintf("TRANSACTIONAL_ID_AUTHORIZATION_FAILED: transactional id %s (kafka.transactional_id_prefix %q): %s is not allowed to use it; fix: %s",
		cfg.TransactionalID(), cfg.Kafka.TransactionalIDPrefix, who,
		aclFix(cfg, []kmsg.ACLOperation{kmsg.ACLOperationWrite}, "--resource-pattern-type prefixed --transactional-id "+cfg.Kafka.TransactionalIDPrefix+"-"))
}

// aclFix is the kafka-acls.sh command that grants ops on the resource.
func aclFix(cfg *config.Config, ops []kmsg.ACLOperation, resource string) string {
	user := principalUser(cfg)
	if user == "" {
		user = "<principal>"
	}
	var o []string
	for _, op := range ops {
		n := opName(op)
		o = append(o, "--operation "+n[:1]+strings.ToLower(n[1:]))
	}
	return fmt.Sprintf("kafka-acls.sh --bootstrap-server <broker> --add --allow-principal User:%s %s %s", user, strings.Join(o, " "), resource)
}

func opName(op kmsg.ACLOperation) string {
	switch op {
	case kmsg.ACLOperationRead:
		return "READ"
	case kmsg.ACLOperationWrite:
		return "WRITE"
	case kmsg.ACLOperationDescribe:
		return "DESCRIBE"
	}
	return op.String()
}

// topicRole says why ordo uses a topic and which operations it needs.
func topicRole(cfg *config.Config, topic string, outputs []string) (string, []kmsg.ACLOperation) {
	var roles []string
	var ops []kmsg.ACLOperation
	if slices.Contains(cfg.Inputs, topic) {
		roles = append(roles, "input")
		ops = append(ops, kmsg.ACLOperationRead)
	}
	if slices.Contains(outputs, topic) {
		roles = append(roles, "output")
		ops = append(ops, kmsg.ACLOperationWrite)
	}
	if topic == cfg.DeadLetter {
		roles = append(roles, "dead_letter_topic")
		if !slices.Contains(ops, kmsg.ACLOperationWrite) {
			ops = append(ops, kmsg.ACLOperationWrite)
		}
	}
	return strings.Join(roles, ", "), ops
}

// outputTopics are the command topics of the config's orchestrate
// processors (custom processors' topics are not known before they run).
func outputTopics(cfg *config.Config) []string {
	var out []string
	for _, e := range cfg.Pipeline {
		if e.Type != "orchestrate" {
			continue
		}
		var oc struct {
			Routes []struct {
				Emit []struct {
					Topic string `yaml:"topic"`
				} `yaml:"emit"`
			} `yaml:"routes"`
		}
		if e.Config.Decode(&oc) != nil {
			continue
		}
		for _, r := range oc.Routes {
			for _, em := range r.Emit {
				if em.Topic != "" && !slices.Contains(out, em.Topic) {
					out = append(out, em.Topic)
				}
			}
		}
	}
	// Processes emit commands (and compensations) too; the stateful stage
	// writes the process log and the changelog.
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k, v := n.Content[i], n.Content[i+1]; k.Value == "topic" && v.Kind == yaml.ScalarNode && v.Value != "" && !slices.Contains(out, v.Value) {
					out = append(out, v.Value)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&cfg.Processes)
	if cfg.State != nil {
		st := cfg.StateSettings()
		for _, t := range []string{st.ProcessLog, st.Changelog} {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	slices.Sort(out)
	return out
}

// connectProblem maps a failure to connect to a clear message when it is
// one retrying cannot fix (authentication, certificates); fatal is false for
// network errors and timeouts.
func connectProblem(cfg *config.Config, err error) (msg string, fatal bool) {
	s := cfg.Kafka.SASL
	mech := strings.ToUpper(s.Mechanism)
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recHdr    tls.RecordHeaderError
		alert     tls.AlertError
	)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		fix := "check kafka.sasl.username and the password (ORDO_KAFKA_SASL_PASSWORD or kafka.sasl.password_file); the user must exist on the cluster for " + mech
		if mech == "OAUTHBEARER" {
			fix = "check kafka.sasl.token / token_file: the token may be expired, unsigned for this cluster or for the wrong audience"
		}
		return fmt.Sprintf("%v (kafka.sasl: mechanism %s, user %q); fix: %s", err, mech, s.Username, fix), true
	case errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		return fmt.Sprintf("%v (kafka.sasl.mechanism %s); fix: set kafka.sasl.mechanism to one the brokers' listener enables (sasl.enabled.mechanisms)", err, mech), true
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &verifyErr) && !errors.As(err, &hostErr):
		return fmt.Sprintf("kafka.tls.ca_file: the brokers' certificate is not trusted: %v; fix: set kafka.tls.ca_file to the PEM of the CA that signed it", err), true
	case errors.As(err, &hostErr):
		return fmt.Sprintf("kafka.tls.server_name: the brokers' certificate does not match the host dialed: %v; fix: list the brokers by a name in the certificate or set kafka.tls.server_name", err), true
	case errors.As(err, &recHdr):
		return fmt.Sprintf("kafka.tls: the brokers' listener does not speak TLS (%v); fix: point kafka.brokers at the TLS listener or set kafka.tls: false", err), true
	case errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls: "):
		// The broker aborted the handshake (Go reports remote TCP alerts as
		// a plain "remote error"): with mTLS it judged ordo's certificate.
		if cfg.Kafka.TLS.CertFile == "" {
			return fmt.Sprintf("kafka.tls.cert_file: the brokers refused the TLS handshake (%v): their listener wants a client certificate (mTLS); fix: set kafka.tls.cert_file and key_file", err), true
		}
		return fmt.Sprintf("kafka.tls.cert_file: the brokers refused ordo's client certificate (%v); fix: use a certificate signed by a CA in the brokers' trust store (ssl.truststore)", err), true
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Sprintf("%v; fix: grant the ACLs of docs/security.md", err), true
	}
	// franz-go recognizes these answers only by their first bytes (no
	// error type): a TLS alert to a plaintext request, an HTTP server.
	if msg := err.Error(); strings.Contains(msg, "appear to be a tls alert record") {
		return fmt.Sprintf("kafka.tls: the brokers' listener speaks TLS but kafka.tls is off (%v); fix: set kafka.tls: true (or a kafka.tls block with ca_file)", err), true
	} else if strings.Contains(msg, "'HTTP' in ascii") {
		return fmt.Sprintf("kafka.brokers: an HTTP server answered, not Kafka (%v); fix: list the brokers' Kafka listener ports", err), true
	}
	if isFirstReadEOF(err) {
		if cfg.Kafka.TLS.Enabled {
			return fmt.Sprintf("kafka.tls: the brokers close every TLS connection at once, so their listener does not speak TLS (%v); fix: point kafka.brokers at the TLS listener or set kafka.tls: false", err), true
		}
		return fmt.Sprintf("kafka.tls: the brokers close every connection at once, so their listener probably wants TLS or SASL (%v); fix: set kafka.tls (and kafka.sasl) as the listener requires", err), true
	}
	// Anything else (refused, timeout) can be an outage: not a verdict.
	return "", false
}

// authzHook reports, while ordo runs, an ACL that goes missing (revoked,
// or one the preflight could not check): franz-go's errors do not say which
// topic, group or transactional id was refused. It logs an ERROR naming the
// resource and the fix, at most once per resource every authzReportEvery;
// the pipeline aborts the transaction and retries, so nothing is lost while
// the ACL is missing.
type authzHook struct {
	cfg *config.Config
	log *slog.Logger

	mu   sync.Mutex
	last map[string]time.Time // resource → last report
	n    map[string]int       // refusals since the last report
}

const authzReportEvery = 10 * time.Second

func newAuthzHook(cfg *config.Config, log *slog.Logger) *authzHook {
	return &authzHook{cfg: cfg, log: log, last: map[string]time.Time{}, n: map[string]int{}}
}

// OnProduceRecordUnbuffered implements kgo.HookProduceRecordUnbuffered.
func (h *authzHook) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	switch {
	case err == nil:
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		role, _ := topicRole(h.cfg, r.Topic, outputTopics(h.cfg))
		if role == "" {
			role = "output"
		}
		h.report("topic "+r.Topic, err, fmt.Sprintf("topic %s (%s)", r.Topic, role), "WRITE", aclFix(h.cfg, []kmsg.ACLOperation{kmsg.ACLOperationWrite}, "--topic "+r.Topic))
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		h.report("txn", err, "transactional id "+h.cfg.TransactionalID(), "WRITE",
			aclFix(h.cfg, []kmsg.ACLOperation{kmsg.ACLOperationWrite}, "--resource-pattern-type prefixed --transactional-id "+h.cfg.Kafka.TransactionalIDPrefix+"-"))
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		h.groupRefused(err)
	}
}

// OnGroupManageError implements kgo.HookGroupManageError.
func (h *authzHook) OnGroupManageError(err error) {
	if errors.Is(err, kerr.GroupAuthorizationFailed) {
		h.groupRefused(err)
	}
}

func (h *authzHook) groupRefused(err error) {
	h.report("group", err, "group "+h.cfg.Kafka.Group, "READ", aclFix(h.cfg, []kmsg.ACLOperation{kmsg.ACLOperationRead}, "--group "+h.cfg.Kafka.Group))
}

func (h *authzHook) report(key string, err error, resource, op, fix string) {
	h.mu.Lock()
	h.n[key]++
	if time.Since(h.last[key]) < authzReportEvery {
		h.mu.Unlock()
		return
	}
	n := h.n[key]
	h.last[key], h.n[key] = time.Now(), 0
	h.mu.Unlock()
	who := "ordo"
	if u := principalUser(h.cfg); u != "" {
		who = "User:" + u
	}
	code := err.Error()
	var ke *kerr.Error
	if errors.As(err, &ke) {
		code = ke.Message
	}
	h.log.Error(fmt.Sprintf("%s: %s may not %s %s; ordo aborts the transaction and retries until the ACL is granted (nothing is lost)", code, who, op, resource),
		"resource", resource, "refusals", n, "fix", fix, "see", "docs/security.md")
}

// isFirstReadEOF: the broker closed the connection right after the dial or
// the first request (franz-go's guess at a protocol mismatch).
func isFirstReadEOF(err error) bool {
	var fe *kgo.ErrFirstReadEOF
	return err != nil && errors.As(err, &fe)
}

// notChecked logs a check the preflight could not make. A coordinator that
// is not ready yet (a fresh cluster creating its internal topics) is normal;
// an authorization failure would have been answered before it.
func notChecked(log *slog.Logger, what, name string, err error) {
	lvl := slog.LevelWarn
	if kerr.IsRetriable(err) {
		lvl = slog.LevelInfo
	}
	log.Log(context.Background(), lvl, "kafka preflight: "+what+" not checked", "name", name, "err", err)
}

// principalUser is the user name Kafka will see, for messages and ACL
// fixes: the SASL user, or an OAUTHBEARER token's subject (read, not
// verified); "" when unknown (e.g. mTLS: the certificate's subject).
func principalUser(cfg *config.Config) string {
	s := cfg.Kafka.SASL
	switch strings.ToUpper(s.Mechanism) {
	case "":
		return ""
	case "OAUTHBEARER":
		tok, err := cfg.SASLToken()
		if err != nil {
			return ""
		}
		parts := strings.Split(tok, ".")
		if len(parts) < 2 {
			return ""
		}
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
		if err != nil {
			return ""
		}
		var claims struct {
			Sub string `json:"sub"`
		}
		if json.Unmarshal(b, &claims) != nil {
			return ""
		}
		return claims.Sub
	}
	return s.Username
}
