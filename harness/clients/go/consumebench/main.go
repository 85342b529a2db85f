// Command consumebench consumes a prefilled topic as one member of a fresh consumer group with
// segmentio/kafka-go, IBM/sarama or twmb/franz-go (their defaults, offsets from the earliest,
// commits every second as each client does it) until it has read -records records, touching
// every value. It prints one JSON line: the time from the first record to the last, and this
// process's CPU time over the same span (getrusage), so a shared machine's noise matters less.
//
//	{"client":"franz-go","records":300000,"bytes":30000000,"ms":123.4,"cpu_ms":98.7}
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

func cpu() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// meter counts records and notes when the first arrived.
type meter struct {
	want     int64
	n        atomic.Int64
	bytes    atomic.Int64
	sink     atomic.Int64
	first    atomic.Int64 // UnixNano of the first record
	firstCPU atomic.Int64
	started  atomic.Bool
	done     chan struct{}
}

// record counts one value; returns true when the last one has been read.
func (m *meter) record(v []byte) bool {
	if m.started.CompareAndSwap(false, true) {
		m.firstCPU.Store(int64(cpu()))
		m.first.Store(time.Now().UnixNano())
	}
	if len(v) > 0 {
		// Touch the value, as an application would.
		m.sink.Add(int64(v[len(v)-1]))
	}
	m.bytes.Add(int64(len(v)))
	if m.n.Add(1) == m.want {
		close(m.done)
		return true
	}
	return false
}

type handler struct{ m *meter }

func (handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		s.MarkMessage(msg, "")
		if h.m.record(msg.Value) {
			return nil
		}
	}
	return nil
}

func main() {
	client := flag.String("client", "", "kafka-go, sarama or franz-go")
	brokers := flag.String("bootstrap", "127.0.0.1:9092", "bootstrap server")
	topic := flag.String("topic", "", "topic")
	group := flag.String("group", "", "group id")
	records := flag.Int64("records", 0, "records to read")
	flag.Parse()
	m := &meter{want: *records, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	switch *client {
	case "kafka-go":
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:        []string{*brokers},
			GroupID:        *group,
			Topic:          *topic,
			StartOffset:    kafka.FirstOffset,
			CommitInterval: time.Second,
			MaxBytes:       50 << 20,
		})
		go func() {
			for {
				msg, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				if m.record(msg.Value) {
					return
				}
			}
		}()
		defer r.Close()
	case "sarama":
		cfg := sarama.NewConfig()
		cfg.Version = sarama.V3_0_0_0
		cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
		cfg.Consumer.Offsets.AutoCommit.Interval = time.Second
		g, err := sarama.NewConsumerGroup([]string{*brokers}, *group, cfg)
		if err != nil {
			panic(err)
		}
		go func() {
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{*topic}, handler{m}); err != nil {
					return
				}
				select {
				case <-m.done:
					return
				default:
				}
			}
		}()
		defer g.Close()
	case "franz-go":
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(*brokers),
			kgo.ConsumerGroup(*group),
			kgo.ConsumeTopics(*topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.AutoCommitInterval(time.Second),
		)
		if err != nil {
			panic(err)
		}
		go func() {
			for ctx.Err() == nil {
				fs := cl.PollFetches(ctx)
				stop := false
				fs.EachRecord(func(r *kgo.Record) {
					if !stop && m.record(r.Value) {
						stop = true
					}
				})
				if stop {
					return
				}
			}
		}()
		defer cl.Close()
	default:
		fmt.Fprintln(os.Stderr, "consumebench: -client kafka-go|sarama|franz-go")
		os.Exit(2)
	}
	select {
	case <-m.done:
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "consumebench: timed out after", m.n.Load(), "records")
		os.Exit(1)
	}
	took := time.Since(time.Unix(0, m.first.Load()))
	used := cpu() - time.Duration(m.firstCPU.Load())
	out, _ := json.Marshal(map[string]any{
		"client": *client, "records": m.n.Load(), "bytes": m.bytes.Load(),
		"ms": float64(took.Microseconds()) / 1000, "cpu_ms": float64(used.Microseconds()) / 1000,
	})
	fmt.Println(string(out))
	// Leaving the group is the next run's business; exit at once so its wait is not timed.
	os.Exit(0)
}
