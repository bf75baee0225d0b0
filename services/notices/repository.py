"""The notices service's queries: the service asks here and decides."""
from sqlalchemy import delete, select

from services.notices.models import Notice, NoticeSettings

RETRY_BATCH = 100  # notices tried again in one tick, the longest waiting first


class NoticesRepository:
    def __init__(self, session):
        self.session = session

    def due_for_retry(self, now):
        return self.session.scalars(select(Notice).where(Notice.channel == "email", Notice.next_attempt_at <= now)
                                    .order_by(Notice.next_attempt_at).limit(RETRY_BATCH)).all()

    def on_channel(self, tenant, channel):
        """A tenant's notices waiting on ``channel`` (``email``: not sent yet; ``phone``: for the desk to call)."""
        return self.session.scalars(select(Notice).where(Notice.tenant == tenant, Notice.channel == channel)
                                    .order_by(Notice.id)).all()

    def phone_notice(self, tenant, notice_id):
        notice = self.session.get(Notice, notice_id)
        return notice if notice is not None and notice.tenant == tenant and notice.channel == "phone" else None

    def forget_patron(self, tenant, patron_id):
        self.session.execute(delete(Notice).where(Notice.tenant == tenant, Notice.patron_id == patron_id))

    def settings(self, tenant):
        """The tenant's notice settings; titles left out and the standard wording until an admin chooses."""
        return self.session.get(NoticeSettings, tenant) or NoticeSettings(tenant=tenant, include_titles=False,
                                                                          templates={})
