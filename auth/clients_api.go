package auth

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"oauth2-api/httpx"
	"oauth2-api/store"
)

// handleClientList serves GET /api/v1/clients (admin).
func handleClientList(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return requireAdmin(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, _ *store.User) {
		list, err := db.ListClients(r.Context())
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		out := make([]ClientJSON, len(list))
		for i := range list {
			out[i] = ClientView(&list[i], "")
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"clients": out})
	})
}

// handleClientCreate serves POST /api/v1/clients (admin): the answer holds
// the secret, once.
func handleClientCreate(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, release bool, now func() time.Time) http.Handler {
	return requireAdmin(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, admin *store.User) {
		var spec ClientSpec
		if err := httpx.DecodeJSON(r, &spec); err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		c, secret, err := CreateClient(r.Context(), db, spec, release, now())
		if err != nil {
			if !errors.Is(err, store.ErrUnavailable) {
				err = httpx.Errorf(http.StatusUnprocessableEntity, "validation_failed", "%s", err.Error())
			}
			writeAPIError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "client created", "request_id", httpx.InfoFrom(r).ID, "client_id", c.ID, "by", admin.ID)
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusCreated, ClientView(c, secret))
	})
}

// handleClientDelete serves DELETE /api/v1/clients/{id} (admin).
func handleClientDelete(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return requireAdmin(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, admin *store.User) {
		id := r.PathValue("id")
		err := DeleteClient(r.Context(), db, cs, ts.Revoked, id, ts.AccessTTL, now())
		if errors.Is(err, store.ErrNotFound) {
			err = httpx.Errorf(http.StatusNotFound, "not_found", "no such client")
		}
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "client deleted", "request_id", httpx.InfoFrom(r).ID, "client_id", id, "by", admin.ID)
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleClientRotate serves POST /api/v1/clients/{id}/secret (admin).
func handleClientRotate(log *slog.Logger, db *store.DB, ts *Tokens, cs *Clients, now func() time.Time) http.Handler {
	return requireAdmin(log, db, ts, cs, now, func(w http.ResponseWriter, r *http.Request, admin *store.User) {
		id := r.PathValue("id")
		secret, err := RotateClientSecret(r.Context(), db, cs, ts.Revoked, id, ts.AccessTTL, now())
		if errors.Is(err, store.ErrNotFound) {
			err = httpx.Errorf(http.StatusNotFound, "not_found", "no such confidential client")
		}
		if err != nil {
			writeAPIError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "client secret rotated", "request_id", httpx.InfoFrom(r).ID, "client_id", id, "by", admin.ID)
		httpx.NoStore(w)
		httpx.JSON(w, http.StatusOK, map[string]string{"client_id": id, "client_secret": secret})
	})
}
