-- The schema of simplane before migrations (commit a024398, revision 0001) on postgresql: the statements
-- SQLModel.metadata.create_all ran for `git show a024398:server/store/models.py` (SQLAlchemy 2.0).

CREATE TABLE users (
	id SERIAL NOT NULL,
	name VARCHAR NOT NULL,
	admin BOOLEAN NOT NULL,
	created_at FLOAT NOT NULL,
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ix_users_name ON users (name);

CREATE TABLE api_keys (
	id VARCHAR NOT NULL,
	user_id INTEGER NOT NULL,
	secret_hash VARCHAR NOT NULL,
	kind VARCHAR NOT NULL,
	machine_group VARCHAR NOT NULL,
	description VARCHAR NOT NULL,
	created_at FLOAT NOT NULL,
	last_used_at FLOAT,
	revoked BOOLEAN NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_api_keys_user_id ON api_keys (user_id);

CREATE TABLE machine_groups (
	name VARCHAR NOT NULL,
	owner VARCHAR NOT NULL,
	provider INTEGER NOT NULL,
	state INTEGER NOT NULL,
	machine_type VARCHAR NOT NULL,
	zone VARCHAR NOT NULL,
	machines INTEGER NOT NULL,
	spot BOOLEAN NOT NULL,
	disk_size_gb INTEGER NOT NULL,
	created_at FLOAT NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE tasks (
	id VARCHAR NOT NULL,
	owner VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	project VARCHAR NOT NULL,
	machine_group VARCHAR NOT NULL,
	command JSON NOT NULL,
	env JSON NOT NULL,
	status INTEGER NOT NULL,
	attempt INTEGER NOT NULL,
	exit_code INTEGER,
	error VARCHAR NOT NULL,
	machine_id VARCHAR NOT NULL,
	created_at FLOAT NOT NULL,
	updated_at FLOAT NOT NULL,
	time_to_live FLOAT NOT NULL,
	cpus INTEGER NOT NULL,
	inputs VARCHAR NOT NULL,
	history JSON NOT NULL,
	input_bytes INTEGER NOT NULL,
	input_files INTEGER NOT NULL,
	output_bytes INTEGER NOT NULL,
	output_files INTEGER NOT NULL,
	revision INTEGER NOT NULL,
	update_seq INTEGER NOT NULL,
	stdout_size INTEGER NOT NULL,
	stderr_size INTEGER NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_tasks_status ON tasks (status);

CREATE INDEX ix_tasks_machine_group ON tasks (machine_group);

CREATE INDEX ix_tasks_project ON tasks (project);

CREATE INDEX ix_tasks_owner_id ON tasks (owner, id);

CREATE TABLE task_events (
	revision INTEGER NOT NULL,
	task_id VARCHAR NOT NULL,
	owner VARCHAR NOT NULL,
	task BYTEA NOT NULL,
	PRIMARY KEY (revision)
);

CREATE INDEX ix_task_events_owner ON task_events (owner);

CREATE TABLE stored_files (
	owner VARCHAR NOT NULL,
	path VARCHAR NOT NULL,
	size INTEGER NOT NULL,
	sha256 VARCHAR NOT NULL,
	created_at FLOAT NOT NULL,
	PRIMARY KEY (owner, path)
);
