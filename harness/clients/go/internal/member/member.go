// Package member is what the harness's Go members share: the flags `cohort member` takes, the
// JSON event lines it prints (the harness journal's format), the partitions a member owns, and
// the control commands it reads on stdin. Each client's program (kafka-go, sarama, franz-go)
// drives its own consumer group API with it. Test and benchmark tools, not published code.
package member

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Flags are `cohort member`'s, for the ones a client honours.
type Flags struct {
	Client            string
	Bootstrap         string
	Group             string
	Topics            []string
	Balancers         []string
	InstanceID        string
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	RebalanceTimeout  time.Duration
	CommitInterval    time.Duration
	Name              string
	Control           bool
	processingUs      atomic.Int64
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

// Fail says why the member cannot run and exits 2.
func Fail(client, why string) {
	fmt.Fprintf(os.Stderr, "%s member: %s\n", client, why)
	os.Exit(2)
}

// Parse reads the flags; one the client cannot honour is an error naming the client, not
// ignored. `unsupported` names them, with why.
func Parse(client string, unsupported map[string]string) *Flags {
	f := &Flags{Client: client}
	fs := flag.NewFlagSet(client, flag.ContinueOnError)
	var topics, balancers list
	var session, heartbeat, rebalance, commit, processing int64
	fs.StringVar(&f.Bootstrap, "bootstrap", "", "bootstrap servers")
	fs.StringVar(&f.Group, "group", "", "group id")
	fs.Var(&topics, "topic", "topic (repeat)")
	fs.Var(&balancers, "balancer", "balancer by protocol name (repeat, priority order)")
	fs.StringVar(&f.InstanceID, "instance-id", "", "group.instance.id")
	fs.Int64Var(&session, "session-timeout-ms", 0, "session timeout")
	fs.Int64Var(&heartbeat, "heartbeat-interval-ms", 0, "heartbeat interval")
	fs.Int64Var(&rebalance, "rebalance-timeout-ms", 0, "rebalance timeout")
	fs.Int64Var(&commit, "commit-interval-ms", 500, "how often processed offsets are committed")
	fs.Int64Var(&processing, "processing-us", 0, "time to process one record")
	fs.StringVar(&f.Name, "name", "member", "name in the event lines")
	fs.BoolVar(&f.Control, "control", false, "read control commands on stdin")
	for flagName := range unsupported {
		if fs.Lookup(flagName) == nil {
			fs.String(flagName, "", "not supported by this client")
		}
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		Fail(client, err.Error())
	}
	fs.Visit(func(fl *flag.Flag) {
		if why, ok := unsupported[fl.Name]; ok {
			Fail(client, fmt.Sprintf("--%s cannot be honoured: %s", fl.Name, why))
		}
	})
	if f.Bootstrap == "" || f.Group == "" || len(topics) == 0 {
		Fail(client, "--bootstrap, --group and --topic are required")
	}
	f.Topics, f.Balancers = topics, balancers
	if len(f.Balancers) == 0 {
		f.Balancers = []string{"range"}
	}
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	f.SessionTimeout, f.HeartbeatInterval, f.RebalanceTimeout = ms(session), ms(heartbeat), ms(rebalance)
	f.CommitInterval = ms(commit)
	f.processingUs.Store(processing)
	return f
}

// Process spends the configured processing time on n records.
func (f *Flags) Process(n int) {
	if us := f.processingUs.Load() * int64(n); us > 0 {
		time.Sleep(time.Duration(us) * time.Microsecond)
	}
}

// NowUs is microseconds since the Unix epoch, the journal's clock.
func NowUs() int64 { return time.Now().UnixMicro() }

var outMu sync.Mutex

// Emit prints one event line.
func (f *Flags) Emit(event string, fields map[string]any) {
	line := map[string]any{"ts": NowUs(), "source": f.Name, "event": event}
	for k, v := range fields {
		line[k] = v
	}
	b, err := json.Marshal(line)
	if err != nil {
		return
	}
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

// Error emits an error event.
func (f *Flags) Error(format string, args ...any) {
	f.Emit("error", map[string]any{"message": fmt.Sprintf(format, args...)})
}

// Started emits the started line.
func (f *Flags) Started(clientVersion string) {
	fields := map[string]any{"client": clientVersion, "balancers": f.Balancers}
	if f.InstanceID != "" {
		fields["instance_id"] = f.InstanceID
	}
	f.Emit("started", fields)
}

// Partitions is topic -> partitions, as the journal writes them.
type Partitions map[string][]int32

// Owned tracks the partitions a member owns.
type Owned struct {
	mu sync.Mutex
	m  map[string]map[int32]bool
}

// NewOwned is an empty set.
func NewOwned() *Owned { return &Owned{m: map[string]map[int32]bool{}} }

// Add adds partitions and returns the whole set.
func (o *Owned) Add(p Partitions) Partitions {
	o.mu.Lock()
	defer o.mu.Unlock()
	for t, ps := range p {
		if o.m[t] == nil {
			o.m[t] = map[int32]bool{}
		}
		for _, x := range ps {
			o.m[t][x] = true
		}
	}
	return o.snapshot()
}

// Remove removes partitions.
func (o *Owned) Remove(p Partitions) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for t, ps := range p {
		for _, x := range ps {
			delete(o.m[t], x)
		}
		if len(o.m[t]) == 0 {
			delete(o.m, t)
		}
	}
}

// Clear empties the set and returns what it held.
func (o *Owned) Clear() Partitions {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.snapshot()
	o.m = map[string]map[int32]bool{}
	return s
}

// Snapshot is the set now.
func (o *Owned) Snapshot() Partitions {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.snapshot()
}

func (o *Owned) snapshot() Partitions {
	out := Partitions{}
	for t, ps := range o.m {
		for x := range ps {
			out[t] = append(out[t], x)
		}
		sort.Slice(out[t], func(i, j int) bool { return out[t][i] < out[t][j] })
	}
	return out
}

// Offsets is topic -> partition -> next offset, as the journal writes commits.
func Offsets(m map[string]map[int32]int64) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for t, ps := range m {
		out[t] = map[string]int64{}
		for p, o := range ps {
			out[t][fmt.Sprint(p)] = o
		}
	}
	return out
}

// ReadControl applies `processing` commands from stdin; the Go clients have no pluggable
// network, so the other faults are reported as not applied.
func (f *Flags) ReadControl() {
	if !f.Control {
		return
	}
	go func() {
		s := bufio.NewScanner(os.Stdin)
		for s.Scan() {
			var cmd struct {
				Cmd string `json:"cmd"`
				Us  int64  `json:"us"`
			}
			if err := json.Unmarshal(s.Bytes(), &cmd); err == nil && cmd.Cmd == "processing" {
				f.processingUs.Store(cmd.Us)
				continue
			}
			f.Error("the %s client has no pluggable network; not applied: %s", f.Client, s.Text())
		}
	}()
}
