// The segmentio/kafka-go consumer group as a harness member (`cohort member --client
// kafka-go`): its ConsumerGroup/Generation API, a reader per assigned partition, commits through
// the generation. kafka-go has no static membership, no cooperative protocol and no poll
// interval, so those flags are refused.
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"cohort.rs/clients/internal/member"
	kafka "github.com/segmentio/kafka-go"
)

const version = "kafka-go v0.4.51"

func main() {
	f := member.Parse("kafka-go", map[string]string{
		"instance-id":          "kafka-go has no static membership (group.instance.id)",
		"max-poll-interval-ms": "kafka-go has no poll interval bound",
		"group-protocol":       "kafka-go speaks the classic protocol only",
	})
	var balancers []kafka.GroupBalancer
	for _, b := range f.Balancers {
		switch b {
		case "range":
			balancers = append(balancers, kafka.RangeGroupBalancer{})
		case "roundrobin":
			balancers = append(balancers, kafka.RoundRobinGroupBalancer{})
		default:
			member.Fail("kafka-go", "balancer "+b+": kafka-go has range and roundrobin")
		}
	}
	cfg := kafka.ConsumerGroupConfig{
		ID:                     f.Group,
		Brokers:                []string{f.Bootstrap},
		Topics:                 f.Topics,
		GroupBalancers:         balancers,
		StartOffset:            kafka.FirstOffset,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: time.Second,
	}
	if f.SessionTimeout > 0 {
		cfg.SessionTimeout = f.SessionTimeout
	}
	if f.HeartbeatInterval > 0 {
		cfg.HeartbeatInterval = f.HeartbeatInterval
	}
	if f.RebalanceTimeout > 0 {
		cfg.RebalanceTimeout = f.RebalanceTimeout
	}
	group, err := kafka.NewConsumerGroup(cfg)
	if err != nil {
		member.Fail("kafka-go", err.Error())
	}
	f.Started(version)
	f.ReadControl()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	owned := member.NewOwned()
	var tasks sync.WaitGroup
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				break
			}
			f.Error("generation: %v", err)
			continue
		}
		all := member.Partitions{}
		for topic, parts := range gen.Assignments {
			for _, p := range parts {
				all[topic] = append(all[topic], int32(p.ID))
			}
		}
		f.Emit("assigned", map[string]any{
			"generation": gen.ID, "member_id": gen.MemberID, "leader": nil, "protocol": nil,
			"partitions": owned.Add(all),
		})
		for topic, parts := range gen.Assignments {
			for _, p := range parts {
				topic, p := topic, p
				tasks.Add(1)
				gen.Start(func(genCtx context.Context) {
					defer tasks.Done()
					// Ends with the generation, or when the member is told to stop: it then
					// commits while the generation is still valid, before leaving.
					both, cancel := context.WithCancel(genCtx)
					defer cancel()
					go func() {
						select {
						case <-ctx.Done():
							cancel()
						case <-both.Done():
						}
					}()
					consume(both, f, gen, owned, topic, p)
				})
			}
		}
	}
	// Commit and give up first (the tasks see the signal), then leave the group.
	tasks.Wait()
	group.Close()
	f.Emit("left", nil)
	os.Exit(0)
}

// consume reads one partition while the generation lasts, committing what it processed.
func consume(ctx context.Context, f *member.Flags, gen *kafka.Generation, owned *member.Owned, topic string, p kafka.PartitionAssignment) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   []string{f.Bootstrap},
		Topic:     topic,
		Partition: p.ID,
		MinBytes:  1,
		MaxBytes:  1 << 20,
		MaxWait:   100 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(p.Offset); err != nil {
		f.Error("%s/%d: set offset %d: %v", topic, p.ID, p.Offset, err)
	}
	next, committed := p.Offset, p.Offset
	lastCommit := time.Now()
	commit := func() {
		if next == committed || next < 0 {
			return
		}
		requested := member.NowUs()
		offs := map[string]map[int]int64{topic: {p.ID: next}}
		if err := gen.CommitOffsets(offs); err != nil {
			f.Error("commit %s/%d: %v", topic, p.ID, err)
			return
		}
		committed = next
		f.Emit("committed", map[string]any{
			"generation": gen.ID,
			"offsets":    member.Offsets(map[string]map[int32]int64{topic: {int32(p.ID): next}}),
			"requested":  requested,
		})
	}
	for ctx.Err() == nil {
		// A bounded wait, so that what was processed is committed on the interval even when
		// no more records come.
		wait, cancel := context.WithTimeout(ctx, f.CommitInterval)
		msg, err := r.ReadMessage(wait)
		cancel()
		if time.Since(lastCommit) >= f.CommitInterval {
			commit()
			lastCommit = time.Now()
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			break
		}
		delivered := member.NowUs()
		f.Process(1)
		f.Emit("processed", map[string]any{
			"topic": topic, "partition": p.ID, "first": msg.Offset, "last": msg.Offset,
			"generation": gen.ID, "delivered": delivered,
		})
		next = msg.Offset + 1
	}
	// The generation ends (a rebalance, or the member leaves): commit what was processed while
	// it is still this generation's, then give the partition up (kafka-go's rebalances are
	// eager).
	commit()
	gone := member.Partitions{topic: {int32(p.ID)}}
	owned.Remove(gone)
	f.Emit("revoked", map[string]any{"generation": gen.ID, "partitions": gone})
}
