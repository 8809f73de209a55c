package auth

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
)

// The admin client API: the CLI's client commands over REST (admin only,
// see routes.go). Each write commits only while the caller is still an
// active admin (store.DB.asAdmin), else 403 as requireUser would answer.

// handleClientList serves GET /api/v1/clients?limit=&offset=, a page as
// the user list has: with open registration strangers may make 10,000
// clients of up to 16 KiB each, which one answer would read whole.
func handleClientList(log *slog.Logger, db *store.DB) http.Handler {
	return restHandler(log, false, func(r *http.Request, _ *struct{}) (int, any, error) {
		limit, offset, err := page(r)
		if err != nil {
			return 0, nil, err
		}
		list, total, err := db.ListClients(r.Context(), limit, offset)
		if err != nil {
			return 0, nil, err
		}
		out := make([]ClientJSON, len(list))
		for i := range list {
			out[i] = ClientView(&list[i], "")
		}
		return http.StatusOK, map[string]any{"clients": out, "total": total}, nil
	})
}

// handleClientCreate serves POST /api/v1/clients: the answer holds the
// secret, once, and is not to be stored.
func handleClientCreate(log *slog.Logger, db *store.DB, release bool, resources []string, now func() time.Time) http.Handler {
	return restHandler(log, false, func(r *http.Request, spec *ClientSpec) (int, any, error) {
		c, secret, err := CreateClient(r.Context(), db, principalOf(r).user.ID, *spec, release, resources, now())
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, shownOnce{ClientView(c, secret)}, nil
	})
}

// handleClientDelete serves DELETE /api/v1/clients/{id}: every session of
// the client ends.
func handleClientDelete(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return restHandler(log, false, func(r *http.Request, _ *struct{}) (int, any, error) {
		id := r.PathValue("id")
		err := DeleteClient(r.Context(), db, principalOf(r).user.ID, cs, ts.Revoked, id, "", ts.AccessTTL, now())
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil, httpx.E(httpx.KindNotFound, "no such client")
		}
		if err != nil {
			return 0, nil, err
		}
		return http.StatusNoContent, nil, nil
	})
}

// handleClientRotate serves POST /api/v1/clients/{id}/secret: the answer
// holds the new secret, once.
func handleClientRotate(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return restHandler(log, false, func(r *http.Request, _ *struct{}) (int, any, error) {
		id := r.PathValue("id")
		secret, err := RotateClientSecret(r.Context(), db, principalOf(r).user.ID, cs, ts.Revoked, id, ts.AccessTTL, now())
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil, httpx.E(httpx.KindNotFound, "no such confidential client")
		}
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, shownOnce{map[string]string{"client_id": id, "client_secret": secret}}, nil
	})
}
