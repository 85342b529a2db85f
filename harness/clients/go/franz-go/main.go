// The twmb/franz-go consumer (kgo) as a harness member (`cohort member --client franz-go`):
// BlockRebalanceOnPoll, so the revocation callback runs between polls and commits what was
// processed before the partitions go (its documented way to avoid duplicates); the assigned,
// revoked and lost callbacks are journaled. franz-go has no poll interval bound; its KIP-848
// member is not used here.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"cohort.rs/clients/internal/member"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const version = "franz-go v1.22.3"

type state struct {
	f     *member.Flags
	owned *member.Owned
	mu    sync.Mutex
	// The next offset per partition, processed but not committed yet.
	pending map[string]map[int32]kgo.EpochOffset
}

func (s *state) generation(cl *kgo.Client) int32 {
	_, g := cl.GroupMetadata()
	return g
}

// commit commits what was processed of `only` (or everything) and journals it. What fails to
// commit stays pending for the next attempt. The member's own context is not used: a commit
// must still go out while the member stops.
func (s *state) commit(cl *kgo.Client, only map[string][]int32) {
	s.mu.Lock()
	offs := map[string]map[int32]kgo.EpochOffset{}
	journal := map[string]map[int32]int64{}
	for t, ps := range s.pending {
		for p, o := range ps {
			if only != nil && !contains(only[t], p) {
				continue
			}
			if offs[t] == nil {
				offs[t] = map[int32]kgo.EpochOffset{}
				journal[t] = map[int32]int64{}
			}
			offs[t][p] = o
			journal[t][p] = o.Offset
		}
	}
	s.mu.Unlock()
	if len(offs) == 0 {
		return
	}
	requested := member.NowUs()
	gen := s.generation(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, r *kmsg.OffsetCommitResponse, err error) {
		if err == nil && r != nil {
			for _, t := range r.Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode != 0 {
						err = kmsgError(p.ErrorCode)
					}
				}
			}
		}
		if err != nil {
			s.f.Error("commit: %v", err)
			return
		}
		// Committed: no longer pending, unless more was processed meanwhile.
		s.mu.Lock()
		for t, ps := range offs {
			for p, o := range ps {
				if cur, ok := s.pending[t][p]; ok && cur.Offset == o.Offset {
					delete(s.pending[t], p)
				}
			}
		}
		s.mu.Unlock()
		s.f.Emit("committed", map[string]any{
			"generation": gen, "offsets": member.Offsets(journal), "requested": requested,
		})
	})
}

type kmsgError int16

func (e kmsgError) Error() string { return fmt.Sprintf("kafka error code %d", int16(e)) }

func contains(ps []int32, p int32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func main() {
	f := member.Parse("franz-go", map[string]string{
		"max-poll-interval-ms": "franz-go has no poll interval bound",
		"group-protocol":       "the harness runs franz-go's classic member",
	})
	var balancers []kgo.GroupBalancer
	for _, b := range f.Balancers {
		switch b {
		case "range":
			balancers = append(balancers, kgo.RangeBalancer())
		case "roundrobin":
			balancers = append(balancers, kgo.RoundRobinBalancer())
		case "sticky":
			balancers = append(balancers, kgo.StickyBalancer())
		case "cooperative-sticky":
			balancers = append(balancers, kgo.CooperativeStickyBalancer())
		default:
			member.Fail("franz-go", "balancer "+b+": franz-go has range, roundrobin, sticky and cooperative-sticky")
		}
	}
	s := &state{f: f, owned: member.NewOwned(), pending: map[string]map[int32]kgo.EpochOffset{}}
	opts := []kgo.Opt{
		kgo.SeedBrokers(f.Bootstrap),
		kgo.ClientID("franz-go-" + f.Name),
		kgo.ConsumerGroup(f.Group),
		kgo.ConsumeTopics(f.Topics...),
		kgo.Balancers(balancers...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			if len(m) == 0 {
				return
			}
			id, gen := cl.GroupMetadata()
			f.Emit("assigned", map[string]any{
				"generation": gen, "member_id": id, "leader": nil, "protocol": nil,
				"partitions": s.owned.Add(member.Partitions(m)),
			})
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			if len(m) == 0 {
				return
			}
			// Still owned here: their last commit goes out before they are given up; whatever
			// did not commit is not this member's to commit any more.
			s.commit(cl, m)
			s.mu.Lock()
			for t, ps := range m {
				for _, p := range ps {
					delete(s.pending[t], p)
				}
			}
			s.mu.Unlock()
			s.owned.Remove(member.Partitions(m))
			f.Emit("revoked", map[string]any{"generation": s.generation(cl), "partitions": m})
		}),
		kgo.OnPartitionsLost(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			if len(m) == 0 {
				return
			}
			s.mu.Lock()
			for t, ps := range m {
				for _, p := range ps {
					delete(s.pending[t], p)
				}
			}
			s.mu.Unlock()
			s.owned.Remove(member.Partitions(m))
			f.Emit("lost", map[string]any{"partitions": m})
		}),
	}
	if f.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(f.SessionTimeout))
	}
	if f.HeartbeatInterval > 0 {
		opts = append(opts, kgo.HeartbeatInterval(f.HeartbeatInterval))
	}
	if f.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(f.RebalanceTimeout))
	}
	if f.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(f.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		member.Fail("franz-go", err.Error())
	}
	f.Started(version)
	f.ReadControl()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	lastCommit := time.Now()
	for ctx.Err() == nil {
		poll, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := cl.PollFetches(poll)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				f.Error("fetch %s/%d: %v", t, p, err)
			}
		})
		gen := s.generation(cl)
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			delivered := member.NowUs()
			f.Process(len(p.Records))
			first, last := p.Records[0], p.Records[len(p.Records)-1]
			f.Emit("processed", map[string]any{
				"topic": p.Topic, "partition": p.Partition, "first": first.Offset, "last": last.Offset,
				"generation": gen, "delivered": delivered,
			})
			s.mu.Lock()
			if s.pending[p.Topic] == nil {
				s.pending[p.Topic] = map[int32]kgo.EpochOffset{}
			}
			s.pending[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
			s.mu.Unlock()
		})
		if time.Since(lastCommit) >= f.CommitInterval {
			s.commit(cl, nil)
			lastCommit = time.Now()
		}
		cl.AllowRebalance()
	}
	s.commit(cl, nil)
	// Close revokes (the callback commits) and leaves the group.
	cl.Close()
	f.Emit("left", nil)
	os.Exit(0)
}
