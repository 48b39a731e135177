package store

import (
	"context"
	"time"

	"github.com/spgateway/spgateway/gateway"
)

// UseJTI records that client used the assertion id jti, remembered until
// expires. It returns false when the pair is already recorded: the primary
// key decides, so two replicas racing with the same assertion cannot both
// succeed.
func (s *Store) UseJTI(ctx context.Context, client, jti string, expires time.Time) (bool, error) {
	res, err := s.writer.ExecContext(ctx, s.d.rebind(`INSERT INTO oauth_jtis (client_id, jti, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (client_id, jti) DO NOTHING`), client, jti, expires.UnixMicro())
	if err != nil {
		return false, gateway.Internal("store.UseJTI", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, gateway.Internal("store.UseJTI", err)
	}
	return n == 1, nil
}

// PurgeJTIs deletes the recorded assertion ids that expired before t.
func (s *Store) PurgeJTIs(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.writer.ExecContext(ctx, s.d.rebind(`DELETE FROM oauth_jtis WHERE expires_at < ?`), before.UnixMicro())
	if err != nil {
		return 0, gateway.Internal("store.PurgeJTIs", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, gateway.Internal("store.PurgeJTIs", err)
	}
	return n, nil
}
