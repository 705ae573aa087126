"""The example apps' knobs: notifications' fan-out and provider rate, billing's Stripe
webhook and dunning, analytics' ingestion limits and retention."""

from config.settings.environment import env, positive_int

# Users per bulk task when a campaign fans out (100,000 users -> 200 tasks at 500).
NOTIFICATIONS_CHUNK_SIZE = positive_int("NOTIFICATIONS_CHUNK_SIZE", default=500)
# The email provider's limit, shared by every bulk worker (messages per second).
NOTIFICATIONS_RATE_PER_SECOND = positive_int("NOTIFICATIONS_RATE_PER_SECOND", default=100)
# Messages sent and committed together within a chunk (a crash re-sends at most these).
NOTIFICATIONS_SEND_BATCH = positive_int("NOTIFICATIONS_SEND_BATCH", default=50)

# Stripe's webhook signing secret (whsec_…); without it the webhook answers 503.
BILLING_WEBHOOK_SECRET = env.str("BILLING_WEBHOOK_SECRET", default="")
# Seconds a signed event may be old: a replayed capture of an old delivery is refused.
BILLING_WEBHOOK_TOLERANCE = env.int("BILLING_WEBHOOK_TOLERANCE", default=300)
# For subscriptions the app bills itself (no Stripe subscription): days after a failed
# charge at which the app's dunning retries it; then the subscription is past due.
# Stripe's own subscriptions are retried by Stripe (Smart Retries), not by this schedule.
BILLING_DUNNING_SCHEDULE_DAYS = env.list("BILLING_DUNNING_SCHEDULE_DAYS", cast=int,
                                         default=[1, 3, 7])
# The secret key charges and refunds are made with; STRIPE_API_BASE points tests at a
# stand-in server.
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# The API version the webhook accepts and the client sends; the webhook endpoint in Stripe
# must be set to it. The default is the installed stripe library's (a test holds them equal).
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default="2026-10-28.endive")

# Bearer token clients send to POST /api/events/; without it ingestion answers 503.
ANALYTICS_INGEST_TOKEN = env.str("ANALYTICS_INGEST_TOKEN", default="")
# Bounds of one ingestion request (events, one event's properties, the body), so one
# client cannot make a request that holds a web worker or the table.
ANALYTICS_MAX_BATCH = env.int("ANALYTICS_MAX_BATCH", default=500)
ANALYTICS_MAX_PROPERTIES_BYTES = env.int("ANALYTICS_MAX_PROPERTIES_BYTES", default=4096)
ANALYTICS_MAX_BODY_BYTES = env.int("ANALYTICS_MAX_BODY_BYTES", default=1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, ANALYTICS_MAX_BODY_BYTES)
# Raw events older than this are deleted nightly, this many rows per statement.
ANALYTICS_RETENTION_DAYS = env.int("ANALYTICS_RETENTION_DAYS", default=90)
ANALYTICS_CLEANUP_BATCH = env.int("ANALYTICS_CLEANUP_BATCH", default=5000)
