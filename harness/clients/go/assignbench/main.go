// Command assignbench times the sticky balancers of twmb/franz-go and IBM/sarama on the group
// cohort's balancer benchmarks use: T topics of P partitions, N members subscribed to all of
// them; fresh, a second round where every member reports what it got, and one member joining
// that stable group. For each it times the whole leader step (decoding every member's JoinGroup
// metadata, balancing, encoding every member's SyncGroup assignment, with each library's own
// code for each part) and the balancing alone, and counts the partitions that changed owner.
//
// One JSON line per (client, workload) on stdout:
//
//	{"client":"franz-go","workload":"fresh","step_ms":[...],"assign_ms":[...],"moves":0}
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type result struct {
	Client   string    `json:"client"`
	Workload string    `json:"workload"`
	StepMs   []float64 `json:"step_ms"`
	AssignMs []float64 `json:"assign_ms"`
	Moves    int       `json:"moves"`
}

// plan is member -> topic -> partitions.
type plan map[string]map[string][]int32

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// moves counts partitions owned in prev whose owner differs in next.
func moves(prev, next plan) int {
	owner := map[string]map[int32]string{}
	for m, ts := range next {
		for t, ps := range ts {
			if owner[t] == nil {
				owner[t] = map[int32]string{}
			}
			for _, p := range ps {
				owner[t][p] = m
			}
		}
	}
	n := 0
	for m, ts := range prev {
		for t, ps := range ts {
			for _, p := range ps {
				if owner[t][p] != m {
					n++
				}
			}
		}
	}
	return n
}

// assigned counts distinct assigned partitions.
func assigned(p plan) int {
	seen := map[string]map[int32]bool{}
	for _, ts := range p {
		for t, ps := range ts {
			if seen[t] == nil {
				seen[t] = map[int32]bool{}
			}
			for _, x := range ps {
				seen[t][x] = true
			}
		}
	}
	n := 0
	for _, ps := range seen {
		n += len(ps)
	}
	return n
}

type group struct {
	members []string
	prev    plan // what each member reports owning; nil for fresh members
	gen     int32
}

// side runs one client's leader step on a group and returns the plan.
type side interface {
	name() string
	// step returns the plan, the whole step's time and the balancing's time.
	step(g group, topics map[string]int32) (plan, time.Duration, time.Duration)
}

type franz struct{ b kgo.GroupBalancer }

func (f franz) name() string { return "franz-go" }

func (f franz) step(g group, topics map[string]int32) (plan, time.Duration, time.Duration) {
	interests := make([]string, 0, len(topics))
	for t := range topics {
		interests = append(interests, t)
	}
	sort.Strings(interests)
	members := make([]kmsg.JoinGroupResponseMember, len(g.members))
	for i, id := range g.members {
		members[i] = kmsg.NewJoinGroupResponseMember()
		members[i].MemberID = id
		members[i].ProtocolMetadata = f.b.JoinGroupMetadata(interests, g.prev[id], g.gen)
	}
	start := time.Now()
	mb, _, err := f.b.MemberBalancer(members)
	if err != nil {
		panic(err)
	}
	assignStart := time.Now()
	into, err := mb.(kgo.GroupMemberBalancerOrError).BalanceOrError(topics)
	if err != nil {
		panic(err)
	}
	assign := time.Since(assignStart)
	sync := into.IntoSyncAssignment()
	whole := time.Since(start)
	out := plan{}
	for _, a := range sync {
		parsed, err := f.b.ParseSyncAssignment(a.MemberAssignment)
		if err != nil {
			panic(err)
		}
		out[a.MemberID] = parsed
	}
	return out, whole, assign
}

type srm struct{ s sarama.BalanceStrategy }

func (s srm) name() string { return "sarama" }

func (s srm) step(g group, topics map[string]int32) (plan, time.Duration, time.Duration) {
	interests := make([]string, 0, len(topics))
	parts := make(map[string][]int32, len(topics))
	for t, n := range topics {
		interests = append(interests, t)
		ps := make([]int32, n)
		for i := range ps {
			ps[i] = int32(i)
		}
		parts[t] = ps
	}
	sort.Strings(interests)
	resp := &sarama.JoinGroupResponse{}
	for _, id := range g.members {
		ud, err := s.s.AssignmentData(id, g.prev[id], g.gen)
		if err != nil {
			panic(err)
		}
		req := &sarama.JoinGroupRequest{}
		if err := req.AddGroupProtocolMetadata(s.s.Name(), &sarama.ConsumerGroupMemberMetadata{
			Version: 1, Topics: interests, UserData: ud,
		}); err != nil {
			panic(err)
		}
		resp.Members = append(resp.Members, sarama.GroupMember{
			MemberId: id, Metadata: req.OrderedGroupProtocols[0].Metadata,
		})
	}
	start := time.Now()
	decoded, err := resp.GetMembers()
	if err != nil {
		panic(err)
	}
	assignStart := time.Now()
	p, err := s.s.Plan(decoded, parts)
	if err != nil {
		panic(err)
	}
	assign := time.Since(assignStart)
	sync := &sarama.SyncGroupRequest{}
	for id, a := range p {
		if err := sync.AddGroupAssignmentMember(id, &sarama.ConsumerGroupMemberAssignment{Topics: a}); err != nil {
			panic(err)
		}
	}
	whole := time.Since(start)
	return plan(p), whole, assign
}

func main() {
	nTopics := flag.Int("topics", 500, "topics")
	nParts := flag.Int("partitions", 2000, "partitions per topic")
	nMembers := flag.Int("members", 2000, "members")
	rounds := flag.Int("rounds", 3, "timed rounds per workload")
	only := flag.String("client", "", "franz-go or sarama (default both)")
	flag.Parse()

	topics := make(map[string]int32, *nTopics)
	for t := 0; t < *nTopics; t++ {
		topics[fmt.Sprintf("topic-%05d", t)] = int32(*nParts)
	}
	ids := make([]string, *nMembers)
	for i := range ids {
		ids[i] = fmt.Sprintf("member-%05d", i)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, s := range []side{franz{kgo.StickyBalancer()}, srm{sarama.NewBalanceStrategySticky()}} {
		if *only != "" && *only != s.name() {
			continue
		}
		var first plan
		fresh := group{members: ids, gen: -1}
		var second group
		var joined group
		for _, w := range []string{"fresh", "second round", "one joins"} {
			r := result{Client: s.name(), Workload: w}
			for i := 0; i < *rounds; i++ {
				var g group
				var prev plan
				switch w {
				case "fresh":
					g = fresh
				case "second round":
					g, prev = second, first
				default:
					g, prev = joined, first
				}
				out, whole, assign := s.step(g, topics)
				r.StepMs = append(r.StepMs, ms(whole))
				r.AssignMs = append(r.AssignMs, ms(assign))
				if got, want := assigned(out), len(topics)*int(topics[fmt.Sprintf("topic-%05d", 0)]); got != want {
					panic(fmt.Sprintf("%s %s: %d of %d partitions assigned", s.name(), w, got, want))
				}
				if prev != nil {
					r.Moves = moves(prev, out)
				}
				if w == "fresh" && first == nil {
					first = out
					second = group{members: ids, prev: first, gen: 1}
					joined = group{members: append(append([]string{}, ids...), "member-joiner"), prev: first, gen: 1}
				}
			}
			if err := enc.Encode(r); err != nil {
				panic(err)
			}
		}
	}
}
