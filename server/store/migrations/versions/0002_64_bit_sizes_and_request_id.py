"""64-bit sizes, offsets and revisions (PostgreSQL's INTEGER stops at 2 GiB); tasks.request_id, the client's
idempotency key for SubmitTask, unique per owner.

Revision 0002, after 0001.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stored_files", schema=None) as batch_op:
        batch_op.alter_column("size", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)

    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.alter_column("revision", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(), nullable=True))
        batch_op.alter_column("input_bytes", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)
        batch_op.alter_column("input_files", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)
        batch_op.alter_column(
            "output_bytes", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False
        )
        batch_op.alter_column(
            "output_files", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False
        )
        batch_op.alter_column("revision", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)
        batch_op.alter_column("update_seq", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)
        batch_op.alter_column("stdout_size", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)
        batch_op.alter_column("stderr_size", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False)
        batch_op.create_index("ix_tasks_owner_request_id", ["owner", "request_id"], unique=True)
