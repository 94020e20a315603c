-- retention.runs (master/retention.ts) deletes finished tasks whole once they ended (their last
-- change, updated_at) longer ago than its age. This index holds only finished tasks, by when they
-- ended: a sweep seeks the oldest and stops at the cutoff, instead of walking every finished task
-- kept (a year of history, at every interval) to find that none is due.
CREATE INDEX tasks_finished ON tasks (updated_at) WHERE status IN ('completed', 'failed', 'cancelled');
