package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// FreeAddr returns a 127.0.0.1 address whose port was free just now, for a
// child process to bind.
//
// The port comes from below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), not from ":0": a port handed out by ":0"
// is an ephemeral one, and once released the kernel gives it to the next
// outgoing connection — with Kafka clients of parallel test packages
// connecting all the time, the child process then fails with "address
// already in use" (seen in CI on Jaeger's query port). Below the range,
// only another test picking the same random port can collide.
func FreeAddr() (string, error) {
	p, err := freePorts(1)
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// FreePortPair returns P with P and P+1 both free (a Kafka node's client
// and controller listeners), from the same range as FreeAddr.
func FreePortPair() (int, error) { return freePorts(2) }

// freePorts finds n consecutive free ports below the ephemeral range.
func freePorts(n int) (int, error) {
	lo, hi := 15000, ephemeralStart()
	if hi-lo < 1000 {
		return anyFreePorts(n)
	}
	for range 100 {
		p := lo + rand.IntN(hi-lo-n)
		if free(p, n) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d free consecutive ports in [%d, %d) after 100 tries", n, lo, hi)
}

// anyFreePorts is the fallback when the ephemeral range starts too low.
func anyFreePorts(n int) (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if free(p, n) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d free consecutive ports", n)
}

func free(p, n int) bool {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
		if err != nil {
			return false
		}
		lns = append(lns, ln)
	}
	return true
}

// ephemeralStart is the first port of the kernel's ephemeral range (32768
// when it cannot be read, Linux's default).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return v
}
