"""`python -m simplane.agent --server ADDR ...`"""

import os

# gRPC's C core logs reconnects and GOAWAYs at info level on stderr; the agent reports outages itself.
# This must be set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from simplane.agent.main import main

raise SystemExit(main())
