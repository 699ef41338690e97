"""Payment settings. Read at call time (not import time) so a deployment or a test can change them.

PAYMENTS_TOKENS_PER_USD   whole tokens bought by one US dollar. Default 100: one token per cent, so every
                          fiat amount is a whole number of tokens and every whole token a whole cent.
                          Conversions are integer: one cent = TOKENS_PER_USD * MICRO / 100 micro-tokens
                          (exact for any integer rate, since MICRO = 10**6).
PAYMENTS_CURRENCY         ISO code of the fiat currency (default "usd").
PAYMENTS_TOPUP_MIN_CENTS / PAYMENTS_TOPUP_MAX_CENTS   bounds of one top-up (default $5 … $1,000).
PAYOUT_MIN_MICRO          smallest payout (default 3,000 tokens = $30 at the default rate): about a day's earnings
                          of one mid-range GPU at the default market rate (see payout_min_micro).
PAYMENTS_DEV_PROVIDER     allow the simulated provider when no Stripe key is set (default off, whatever DEBUG
                          says: only `make run` turns it on). Never used when STRIPE_SECRET_KEY is set.
STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET (settings.py), STRIPE_MAX_NETWORK_RETRIES (default 2).
"""

from django.conf import settings

# Stripe's own default: a webhook signed more than 5 minutes ago is refused (replay protection).
WEBHOOK_TOLERANCE_SECONDS = 300
# Stripe keeps idempotency keys for 24 h; a stuck payout is re-sent with its key only inside that time.
PAYOUT_RESEND_WITHIN_HOURS = 23
PAYOUT_RESEND_AFTER_SECONDS = 120


def tokens_per_usd() -> int:
    rate = getattr(settings, "PAYMENTS_TOKENS_PER_USD", 100)
    if type(rate) is not int or rate <= 0:
        raise ValueError("PAYMENTS_TOKENS_PER_USD must be a positive integer")
    return rate


def micro_per_cent() -> int:
    return tokens_per_usd() * settings.MICRO // 100


def currency() -> str:
    return getattr(settings, "PAYMENTS_CURRENCY", "usd")


def topup_min_cents() -> int:
    return getattr(settings, "PAYMENTS_TOPUP_MIN_CENTS", 500)


def topup_max_cents() -> int:
    return getattr(settings, "PAYMENTS_TOPUP_MAX_CENTS", 100_000)


# About what one mid-range GPU earns in a day at the default market rate (jobs.conf: 6 tokens per reference-hour),
# assuming it renders Cycles about 50 times as fast as the 2-vCPU reference machine (an assumption, not measured
# here: no GPU) and is busy half the day, less the 10 % platform fee: 50 x 6 x 0.9 x 12 h = 3,240 tokens.
PAYOUT_MIN_TOKENS = 3_000


def payout_min_micro() -> int:
    return getattr(settings, "PAYOUT_MIN_MICRO", PAYOUT_MIN_TOKENS * settings.MICRO)


def stripe_secret_key() -> str:
    return getattr(settings, "STRIPE_SECRET_KEY", "")


def stripe_webhook_secret() -> str:
    return getattr(settings, "STRIPE_WEBHOOK_SECRET", "")


def stripe_max_network_retries() -> int:
    return getattr(settings, "STRIPE_MAX_NETWORK_RETRIES", 2)


def dev_provider_allowed() -> bool:
    return getattr(settings, "PAYMENTS_DEV_PROVIDER", False) is True
