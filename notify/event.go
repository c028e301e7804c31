package notify

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/steward-iot/steward"
)

// EnqueueEventIn stores in tx, the transaction of the change it reports,
// a pending delivery of event (any JSON body, such as a
// steward.QuarantineEvent) to a webhook channel, so that the change and
// its delivery land together. It is then sent like any notification:
// signed, retried with backoff, recorded in the delivery log. Only webhook
// channels take events (CodeInvalid otherwise). key names the delivery
// in the log and must be new for the channel (CodeConflict otherwise: in
// PostgreSQL a refused insert ends tx). The caller wakes the worker
// (Wake) once tx has committed.
func (nt *Notifier) EnqueueEventIn(ctx context.Context, tx steward.Store, tenantID, channelID, key string, event any) (steward.Delivery, error) {
	if key == "" || len(key) > 256 {
		return steward.Delivery{}, steward.Errorf(steward.CodeInvalid, "an event needs a key of 1 to 256 bytes")
	}
	ch, err := tx.GetChannel(ctx, tenantID, channelID)
	if err != nil {
		return steward.Delivery{}, err
	}
	if ch.Kind != steward.ChannelWebhook {
		return steward.Delivery{}, steward.Errorf(steward.CodeInvalid, "channel %s is a %s channel; events go to webhooks", ch.ID, ch.Kind)
	}
	body, err := json.Marshal(event)
	if err != nil {
		return steward.Delivery{}, fmt.Errorf("encode event: %w", err)
	}
	d := pendingDelivery(tenantID, ch.ID, key, body, nt.clock.Now().UTC(), 0)
	if err := tx.EnqueueDelivery(ctx, d); err != nil {
		return steward.Delivery{}, fmt.Errorf("enqueue event: %w", err)
	}
	return d, nil
}
