"""orders: index (customer_id, placed_at) in place of (customer_id)

The import asks for the newest order of every customer a batch touches; with placed_at in
the index that is read from the index alone instead of from every order's row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 09:05:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(
            'ix_orders_customer_placed', ['customer_id', 'placed_at'], unique=False
        )
        batch_op.drop_index('ix_orders_customer_id')


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_customer_id', ['customer_id'], unique=False)
        batch_op.drop_index('ix_orders_customer_placed')
