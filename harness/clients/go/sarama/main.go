// The IBM/sarama consumer group as a harness member (`cohort member --client sarama`): a
// ConsumerGroupHandler whose ConsumeClaim runs per owned partition, marking and committing what
// it processed (a ticker while the claim runs, and when it ends). With cooperative-sticky the
// claims of one session change across rebalances; a claim's start and end are the partition's
// assignment and revocation. sarama has no poll interval bound and no KIP-848 member.
package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"cohort.rs/clients/internal/member"
	"github.com/IBM/sarama"
)

const version = "sarama v1.61.1"

type handler struct {
	f     *member.Flags
	owned *member.Owned
	// The next offset per partition, marked but not committed yet.
	mu     sync.Mutex
	marked map[string]map[int32]int64
}

func (h *handler) Setup(sess sarama.ConsumerGroupSession) error { return nil }

func (h *handler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.commit(sess, nil)
	return nil
}

// commit commits what was marked (of `only`, or everything) and journals it.
func (h *handler) commit(sess sarama.ConsumerGroupSession, only *member.Partitions) {
	h.mu.Lock()
	offs := map[string]map[int32]int64{}
	for t, ps := range h.marked {
		for p, o := range ps {
			if only != nil && !contains((*only)[t], p) {
				continue
			}
			if offs[t] == nil {
				offs[t] = map[int32]int64{}
			}
			offs[t][p] = o
			delete(ps, p)
		}
	}
	h.mu.Unlock()
	if len(offs) == 0 {
		return
	}
	requested := member.NowUs()
	sess.Commit()
	h.f.Emit("committed", map[string]any{
		"generation": sess.GenerationID(), "offsets": member.Offsets(offs), "requested": requested,
	})
}

func contains(ps []int32, p int32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	topic, p := claim.Topic(), claim.Partition()
	mine := member.Partitions{topic: {p}}
	h.f.Emit("assigned", map[string]any{
		"generation": sess.GenerationID(), "member_id": sess.MemberID(), "leader": nil, "protocol": nil,
		"partitions": h.owned.Add(mine),
	})
	ticker := time.NewTicker(h.f.CommitInterval)
	defer ticker.Stop()
loop:
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				break loop
			}
			delivered := member.NowUs()
			h.f.Process(1)
			h.f.Emit("processed", map[string]any{
				"topic": topic, "partition": p, "first": msg.Offset, "last": msg.Offset,
				"generation": sess.GenerationID(), "delivered": delivered,
			})
			sess.MarkOffset(topic, p, msg.Offset+1, "")
			h.mu.Lock()
			if h.marked[topic] == nil {
				h.marked[topic] = map[int32]int64{}
			}
			h.marked[topic][p] = msg.Offset + 1
			h.mu.Unlock()
		case <-ticker.C:
			h.commit(sess, &mine)
		case <-sess.Context().Done():
			break loop
		}
	}
	// The claim ends (revoked, or the session ends): commit what it processed first.
	h.commit(sess, &mine)
	h.owned.Remove(mine)
	h.f.Emit("revoked", map[string]any{"generation": sess.GenerationID(), "partitions": mine})
	return nil
}

func main() {
	f := member.Parse("sarama", map[string]string{
		"max-poll-interval-ms": "sarama has no poll interval bound",
		"group-protocol":       "sarama speaks the classic protocol only",
	})
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_0_0_0
	cfg.ClientID = "sarama-" + f.Name
	var strategies []sarama.BalanceStrategy
	for _, b := range f.Balancers {
		switch b {
		case "range":
			strategies = append(strategies, sarama.NewBalanceStrategyRange())
		case "roundrobin":
			strategies = append(strategies, sarama.NewBalanceStrategyRoundRobin())
		case "sticky":
			strategies = append(strategies, sarama.NewBalanceStrategySticky())
		case "cooperative-sticky":
			strategies = append(strategies, sarama.NewBalanceStrategyCooperativeSticky())
		default:
			member.Fail("sarama", "balancer "+b+": sarama has range, roundrobin, sticky and cooperative-sticky")
		}
	}
	cfg.Consumer.Group.Rebalance.GroupStrategies = strategies
	if f.SessionTimeout > 0 {
		cfg.Consumer.Group.Session.Timeout = f.SessionTimeout
	}
	if f.HeartbeatInterval > 0 {
		cfg.Consumer.Group.Heartbeat.Interval = f.HeartbeatInterval
	}
	if f.RebalanceTimeout > 0 {
		cfg.Consumer.Group.Rebalance.Timeout = f.RebalanceTimeout
	}
	cfg.Consumer.Group.InstanceId = f.InstanceID
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Return.Errors = true
	// Started before NewConsumerGroup, which connects and fetches metadata, as the other
	// clients' members are: the rebalance benchmark times a member from this line.
	f.Started(version)
	group, err := sarama.NewConsumerGroup([]string{f.Bootstrap}, f.Group, cfg)
	if err != nil {
		member.Fail("sarama", err.Error())
	}
	f.ReadControl()
	go func() {
		for err := range group.Errors() {
			f.Error("%v", err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	h := &handler{f: f, owned: member.NewOwned(), marked: map[string]map[int32]int64{}}
	for ctx.Err() == nil {
		if err := group.Consume(ctx, f.Topics, h); err != nil && ctx.Err() == nil {
			f.Error("consume: %v", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := group.Close(); err != nil {
		f.Error("close: %v", err)
	}
	f.Emit("left", nil)
	os.Exit(0)
}
