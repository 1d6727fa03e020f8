"""campaign_recipients: no index on the columns a send changes, half of each page kept free
on PostgreSQL, no foreign key to campaigns

A send updates every ledger row twice (queued -> sending, then sending -> sent). Indexes on
(campaign_id, status, id) and (customer_id, sent_at) made each update move index entries;
(campaign_id, id) and (customer_id) serve the same reads without. On PostgreSQL an update
that changes no indexed column, and finds room on its page, is heap-only (HOT): no index is
touched at all. Fillfactor 50 leaves that room for the first update; the second finds the
first's dead versions pruned.

The foreign key to campaigns was checked row by row when a send froze its ledger (a third
of the time of the INSERT ... SELECT on PostgreSQL), for nothing: campaigns are never
deleted, and the ledger is a record (customer_id and the events' campaign_id have no foreign
key either).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 12:45:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaign_recipients', schema=None) as batch_op:
        batch_op.create_index(
            'ix_campaign_recipients_campaign', ['campaign_id', 'id'], unique=False
        )
        batch_op.create_index('ix_campaign_recipients_customer', ['customer_id'], unique=False)
        batch_op.drop_index('ix_campaign_recipients_status')
        batch_op.drop_index('ix_campaign_recipients_customer_sent')
        batch_op.drop_constraint(
            'fk_campaign_recipients_campaign_id_campaigns', type_='foreignkey'
        )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE campaign_recipients SET (fillfactor = 50)')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE campaign_recipients RESET (fillfactor)')
    with op.batch_alter_table('campaign_recipients', schema=None) as batch_op:
        batch_op.create_foreign_key(
            'fk_campaign_recipients_campaign_id_campaigns',
            'campaigns',
            ['campaign_id'],
            ['id'],
            ondelete='CASCADE',
        )
        batch_op.create_index(
            'ix_campaign_recipients_customer_sent', ['customer_id', 'sent_at'], unique=False
        )
        batch_op.create_index(
            'ix_campaign_recipients_status', ['campaign_id', 'status', 'id'], unique=False
        )
        batch_op.drop_index('ix_campaign_recipients_customer')
        batch_op.drop_index('ix_campaign_recipients_campaign')
