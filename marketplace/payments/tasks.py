"""Beat tasks of payments. Idempotent: each unit of work is keyed in the ledger and claimed by state."""

from celery import shared_task

from marketplace.payments import earnings, payouts


@shared_task(name="payments.mature_earnings", acks_late=True, ignore_result=True)
def mature_earnings() -> int:
    return earnings.earnings_mature()


@shared_task(name="payments.resend_payouts", acks_late=True, ignore_result=True)
def resend_payouts() -> int:
    return payouts.payouts_resend()
