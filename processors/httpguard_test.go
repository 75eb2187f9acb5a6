package processors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"testing"
)

func TestAddrClass(t *testing.T) {
	for addr, want := range map[string]string{
		"93.184.216.34":          "",
		"2606:4700::1111":        "",
		"169.254.169.254":        "link-local",
		"169.254.0.1":            "link-local",
		"::ffff:169.254.169.254": "link-local",
		"64:ff9b::a9fe:a9fe":     "link-local", // NAT64 of 169.254.169.254
		"fe80::1":                "link-local",
		"fe80::1%eth0":           "link-local",
		"fd00:ec2::254":          "metadata",
		"100.100.100.200":        "metadata",
		"0.0.0.0":                "unspecified",
		"0.1.2.3":                "unspecified",
		"::":                     "unspecified",
		"224.0.0.1":              "multicast",
		"ff02::1":                "multicast",
		"255.255.255.255":        "multicast",
		"127.0.0.1":              "loopback",
		"127.9.9.9":              "loopback",
		"::1":                    "loopback",
		"::ffff:127.0.0.1":       "loopback",
		"10.0.0.1":               "private",
		"172.16.5.4":             "private",
		"172.31.255.255":         "private",
		"192.168.1.1":            "private",
		"100.64.0.1":             "private",
		"100.127.255.254":        "private",
		"fc00::1":                "private",
		"fd12:3456::1":           "private",
		"64:ff9b::a00:1":         "private", // NAT64 of 10.0.0.1
		"172.32.0.1":             "",
		"100.128.0.1":            "",
	} {
		if got := addrClass(netip.MustParseAddr(addr)); got != want {
			t.Errorf("addrClass(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestNetPolicyCheck(t *testing.T) {
	strict, local, private := netPolicy{}, netPolicy{allowLoopback: true}, netPolicy{allowPrivate: true}
	for _, c := range []struct {
		p     netPolicy
		addr  string
		allow bool
	}{
		{strict, "93.184.216.34", true},
		{strict, "127.0.0.1", false},
		{local, "127.0.0.1", true},
		{local, "10.0.0.1", false},
		{private, "127.0.0.1", true},
		{private, "10.0.0.1", true},
		{private, "169.254.169.254", false},
		{private, "fd00:ec2::254", false},
		{private, "0.0.0.0", false},
		{private, "239.1.1.1", false},
	} {
		err := c.p.check(netip.MustParseAddr(c.addr))
		if (err == nil) != c.allow {
			t.Errorf("%+v check(%s) = %v, want allow=%v", c.p, c.addr, err, c.allow)
		}
		var re *addrRefusedError
		if err != nil && !errors.As(err, &re) {
			t.Errorf("%s: %T is not an *addrRefusedError", c.addr, err)
		}
	}
}

func TestCheckConfigHost(t *testing.T) {
	for host, allow := range map[string]bool{
		"tiers.internal":            true, // names are checked at dial time
		"metadata.google.internal":  false,
		"METADATA.google.internal.": false,
		"instance-data":             false,
		"169.254.169.254":           false,
		"10.0.0.1":                  false,
		"localhost":                 false, // loopback without the url being loopback
		"8.8.8.8":                   true,
	} {
		if err := (netPolicy{}).checkConfigHost(host); (err == nil) != allow {
			t.Errorf("checkConfigHost(%q) = %v, want allow=%v", host, err, allow)
		}
	}
	if !isLoopbackHost("localhost") || !isLoopbackHost("127.0.0.2") || !isLoopbackHost("::1") || isLoopbackHost("tiers.internal") || isLoopbackHost("10.0.0.1") {
		t.Error("isLoopbackHost")
	}
}

func TestAllowedHosts(t *testing.T) {
	set := hostSet{}
	for _, e := range []string{"Tiers.Internal", "eu.tiers.internal:8443", "[::1]:9000", "10.0.0.5"} {
		k, _, err := parseAllowedHost(e)
		if err != nil {
			t.Fatalf("%q: %v", e, err)
		}
		set[k] = true
	}
	for raw, want := range map[string]bool{
		"http://tiers.internal/x":        true,
		"https://TIERS.internal:9999/x":  true, // a bare host admits every port
		"https://eu.tiers.internal:8443": true,
		"https://eu.tiers.internal/x":    false, // :443, not :8443
		"http://[::1]:9000/x":            true,
		"http://[::1]:9001/x":            false,
		"http://10.0.0.5:1/":             true,
		"http://evil.example/":           false,
		"http://tiers.internal.evil/":    false,
	} {
		u, _ := url.Parse(raw)
		if got := set.allows(u); got != want {
			t.Errorf("allows(%s) = %v, want %v", raw, got, want)
		}
	}
	for _, bad := range []string{"", "http://x", "x/y", "*.x", "user@x", "x:", "x:0", "x:70000", "x?y"} {
		if _, _, err := parseAllowedHost(bad); err == nil {
			t.Errorf("parseAllowedHost(%q) accepted", bad)
		}
	}
}

// The net.Dialer's Control hook refuses on its own, before connect(2): the
// second line of defence if a dial ever bypasses the resolver check.
func TestGuardedDialerControlRefusesBeforeConnect(t *testing.T) {
	d := newGuardedDialer(netPolicy{allowLoopback: true})
	// Only the Control hook stands between this dial and the address; it
	// runs before connect(2), so no packet leaves.
	_, err := d.dialer.DialContext(context.Background(), "tcp", "169.254.169.254:80")
	var re *addrRefusedError
	if !errors.As(err, &re) || re.Class != "link-local" {
		t.Fatalf("want a link-local refusal from Control, got %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("loopback allowed by policy: %v", err)
	}
	c.Close()
	strict := newGuardedDialer(netPolicy{})
	if _, err := strict.DialContext(context.Background(), "tcp", ln.Addr().String()); !errors.As(err, &re) || re.Class != "loopback" {
		t.Fatalf("strict policy dialed loopback: %v", err)
	}
}
