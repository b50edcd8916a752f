package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/webhook"
)

// webhookHandler serves POST /v1/provider/webhooks: each delivery is
// verified, then de-duplicated by event id across every replica that
// shares the database, then applied (payments.Store.ApplyEvent).
func (s *server) webhookHandler(cfg Config) (http.Handler, error) {
	if len(cfg.WebhookSecrets) == 0 {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fail(w, http.StatusNotFound, "webhooks_off", "", "provider webhooks are off; start payd with --webhook-secret to receive them")
		}), nil
	}
	if cfg.Provider == nil {
		return nil, errors.New("api: WebhookSecrets need a Provider, to re-fetch what a webhook disagrees with")
	}
	apply := func(ctx context.Context, e webhook.Event) error {
		var ev provider.Event
		if err := json.Unmarshal(e.Body, &ev); err != nil {
			s.log.WarnContext(ctx, "payd: dropping a signed provider event that is not an event", slog.String("event", e.ID), slog.Any("error", err))
			return nil
		}
		return s.store.ApplyEvent(ctx, cfg.Provider, ev)
	}
	return webhook.NewHandler(cfg.Engine, &webhook.Verifier{Secrets: cfg.WebhookSecrets}, apply,
		&webhook.Config{Source: "provider", Logger: s.log})
}
