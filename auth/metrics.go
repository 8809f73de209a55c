package auth

import "oauth2-api/metrics"

// Metrics are the authentication series of API.md.
type Metrics struct {
	TokensIssued  *metrics.CounterVec // oauth2_tokens_issued_total{grant_type}
	LoginFailures *metrics.Counter    // oauth2_login_failures_total
	MailFailures  *metrics.CounterVec // oauth2_mail_failures_total{reason}: refused or error
	MailDropped   *metrics.Counter    // oauth2_mail_dropped_total: queue full, or closed
	Logouts       *metrics.CounterVec // oauth2_backchannel_logouts_total{outcome}
}

// NewMetrics registers the series in reg, each label value present at 0.
func NewMetrics(reg *metrics.Registry) *Metrics {
	return &Metrics{
		TokensIssued: reg.CounterVec("oauth2_tokens_issued_total", "Access tokens issued, by grant type.", "grant_type",
			grantPassword, grantAuthorizationCode, grantRefreshToken, grantClientCredentials, grantDeviceCode),
		LoginFailures: reg.Counter("oauth2_login_failures_total", "Failed logins (wrong password, unknown account, or throttled)."),
		MailFailures: reg.CounterVec("oauth2_mail_failures_total",
			"Mail not sent: refused (the server did not offer STARTTLS, or AUTH with SMTP_USERNAME set) or error.", "reason",
			mailRefused, mailError),
		MailDropped: reg.Counter("oauth2_mail_dropped_total", "Mail dropped unsent: the queue was full, or closed at shutdown."),
		Logouts: reg.CounterVec("oauth2_backchannel_logouts_total",
			"Back-channel logout tokens: sent, failed (every try), or dropped (queue full, or closed at shutdown).", "outcome",
			logoutSent, logoutFailed, logoutDropped),
	}
}
