"""stored_files.mode: the permission bits a file was uploaded with, given back on download, while every stored
file is 0600 on disk (existing files: 0644).

Revision 0003, after 0002.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stored_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mode", sa.Integer(), server_default="420", nullable=False))
