package processors

// Outbound HTTP safety for enrich_http: which addresses may be dialed, which
// hosts may be asked (including redirect targets), and which headers never
// follow a redirect. The checks run at config time (literal IPs, well-known
// metadata names) and again at dial time on every resolved address, so a
// hostname that resolves (or is re-bound) to a forbidden address is refused
// where it matters: right before connect.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// netPolicy decides which IP addresses may be connected to.
type netPolicy struct {
	// allowPrivate admits RFC 1918, CGNAT (100.64/10), ULA (fc00::/7) and
	// loopback addresses.
	allowPrivate bool
	// allowLoopback admits 127/8 and ::1 (set when the configured URL's host
	// is itself loopback: local demos and tests).
	allowLoopback bool
}

var (
	cgnat      = netip.MustParsePrefix("100.64.0.0/10")
	thisNet    = netip.MustParsePrefix("0.0.0.0/8")
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	broadcast4 = netip.MustParseAddr("255.255.255.255")
	// Cloud metadata endpoints outside 169.254/16: AWS IPv6 (inside ULA) and
	// Alibaba (inside CGNAT). Refused even with allow_private_networks.
	metadataAddrs = []netip.Addr{netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("100.100.100.200")}
)

// metadataHosts are well-known names of cloud metadata services; they resolve
// to link-local addresses (refused at dial time anyway), refused at config
// time for a clear message.
var metadataHosts = map[string]bool{
	"metadata":                   true,
	"metadata.google.internal":   true,
	"metadata.goog":              true,
	"instance-data":              true,
	"instance-data.ec2.internal": true,
}

// addrClass names why an address is special; "" for an ordinary public one.
func addrClass(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() && nat64.Contains(ip) { // NAT64 embeds an IPv4 address
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	for _, m := range metadataAddrs {
		if ip.WithZone("") == m {
			return "metadata"
		}
	}
	switch {
	case !ip.IsValid():
		return "invalid"
	case ip.IsUnspecified(), thisNet.Contains(ip):
		return "unspecified"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast(), ip == broadcast4:
		return "multicast"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate(), cgnat.Contains(ip):
		return "private"
	}
	return ""
}

// addrRefusedError is a connection the policy refused.
type addrRefusedError struct {
	Addr   netip.Addr
	Class  string
	Reason string
}

func (e *addrRefusedError) Error() string {
	return fmt.Sprintf("address %s refused: %s", e.Addr, e.Reason)
}

// check returns an *addrRefusedError when ip may not be dialed.
func (p netPolicy) check(ip netip.Addr) error {
	class := addrClass(ip)
	var reason string
	switch class {
	case "":
		return nil
	case "metadata":
		reason = "cloud metadata address (never allowed)"
	case "invalid", "unspecified":
		reason = "unspecified address (never allowed)"
	case "link-local":
		reason = "link-local address, where cloud metadata services live (never allowed)"
	case "multicast":
		reason = "multicast/broadcast address (never allowed)"
	case "loopback":
		if p.allowLoopback || p.allowPrivate {
			return nil
		}
		reason = "loopback address (allowed only when the configured url's host is loopback, or with allow_private_networks: true)"
	case "private":
		if p.allowPrivate {
			return nil
		}
		reason = "private network address (set allow_private_networks: true if the service is on your private network)"
	}
	return &addrRefusedError{Addr: ip, Class: class, Reason: reason}
}

// isLoopbackHost reports whether a configured host names this machine.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// checkConfigHost is the config-time check of a host name or literal IP.
func (p netPolicy) checkConfigHost(host string) error {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if metadataHosts[h] {
		return fmt.Errorf("host %q is a cloud metadata service (never allowed)", host)
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return p.check(ip)
	}
	if h == "localhost" {
		return p.check(netip.MustParseAddr("127.0.0.1"))
	}
	return nil
}

// guardedDialer resolves a host itself and dials only addresses the policy
// admits, by IP, so the checked address is the connected one (no DNS
// rebinding between check and connect).
type guardedDialer struct {
	policy netPolicy
	dialer net.Dialer
	// lookup resolves a host name; nil means net.DefaultResolver.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

func newGuardedDialer(p netPolicy) *guardedDialer {
	d := &guardedDialer{policy: p, dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}}
	// Defence in depth: whatever path reaches connect(2), the address is
	// checked once more.
	d.dialer.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial %s: %w", address, err)
		}
		return p.check(ap.Addr())
	}
	return d
}

// DialContext is http.Transport's DialContext.
func (d *guardedDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: bad port: %w", address, err)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		lookup := d.lookup
		if lookup == nil {
			lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
				return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			}
		}
		if ips, err = lookup(ctx, host); err != nil {
			return nil, err
		}
	}
	var refused, lastErr error
	for _, ip := range ips {
		if err := d.policy.check(ip); err != nil {
			if refused == nil {
				refused = err
			}
			continue
		}
		c, err := d.dialer.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if refused != nil {
		return nil, fmt.Errorf("dial %s: %w", address, refused)
	}
	return nil, fmt.Errorf("dial %s: no address", address)
}

// hostSet is the allow-list of hosts enrich_http may send requests to.
// An entry "host" admits every port of host; "host:port" only that port.
// Keys are the normalized host, or net.JoinHostPort(host, port) (brackets
// keep an IPv6 host distinct from a host:port pair).
type hostSet map[string]bool

// normHost lower-cases a host and drops a trailing dot and IPv6 brackets.
func normHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}

// effectivePort is u's port, or the scheme's default.
func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// parseAllowedHost checks one allowed_hosts entry and returns its key.
func parseAllowedHost(entry string) (key, host string, err error) {
	e := strings.TrimSpace(entry)
	if e == "" || strings.ContainsAny(e, "/?#@*") || strings.Contains(e, "://") {
		return "", "", errors.New("not a host or host:port")
	}
	if h, p, err := net.SplitHostPort(e); err == nil {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", "", fmt.Errorf("port %q is not 1..65535", p)
		}
		return net.JoinHostPort(normHost(h), p), normHost(h), nil
	}
	if strings.Count(e, ":") == 1 { // host: with a bad port
		return "", "", errors.New("not a host or host:port")
	}
	return normHost(e), normHost(e), nil
}

func (s hostSet) allows(u *url.URL) bool {
	h := normHost(u.Hostname())
	return s[h] || s[net.JoinHostPort(h, effectivePort(u))]
}

// redirectRefusedError is a redirect enrich_http would not follow.
type redirectRefusedError struct{ Reason string }

func (e *redirectRefusedError) Error() string { return "redirect refused: " + e.Reason }

const maxRedirects = 3

// checkRedirect is the client's CheckRedirect: at most maxRedirects hops,
// only to allowed hosts, never https to http, and none of the sensitive
// headers travel along (Go copies the first request's headers to every
// hop, and keeps custom ones even across hosts).
func checkRedirect(allowed hostSet, sensitive []string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return &redirectRefusedError{Reason: fmt.Sprintf("more than %d redirects", maxRedirects)}
		}
		prev := via[len(via)-1].URL
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return &redirectRefusedError{Reason: fmt.Sprintf("scheme %q of %s", req.URL.Scheme, req.URL.Redacted())}
		}
		if prev.Scheme == "https" && req.URL.Scheme != "https" {
			return &redirectRefusedError{Reason: "https to http downgrade to " + req.URL.Redacted()}
		}
		if !allowed.allows(req.URL) {
			return &redirectRefusedError{Reason: fmt.Sprintf("host %s is not in allowed_hosts", req.URL.Host)}
		}
		for _, h := range sensitive {
			req.Header.Del(h)
		}
		return nil
	}
}

// alwaysStripped are removed on every redirect besides the configured
// headers.
var alwaysStripped = []string{"Authorization", "Proxy-Authorization", "Cookie", "Referer"}
