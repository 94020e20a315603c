-- Every registry process caches authenticated principals for a few seconds
-- (master/store/principal-cache.ts). A principal changed by anyone (another registry process, an
-- admin command run as its own process, hand-written SQL) must be forgotten by all of them at
-- once: this trigger notifies the channel every registry of this schema LISTENs on
-- (master/store/postgres-events.ts). PostgreSQL delivers a notification at commit and folds
-- identical ones of one transaction into one, so a statement touching many rows sends one.
-- Payload "db p *": origin "db" (no registry skips it as its own), code "p" (principals).
-- last_seen is written on every request and does not count as a change.
CREATE FUNCTION pht_notify_principal_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(
    CASE WHEN TG_TABLE_SCHEMA = 'public' THEN 'pht_events' ELSE 'pht_events_' || TG_TABLE_SCHEMA END,
    'db p *');
  RETURN NULL;
END;
$$;

CREATE TRIGGER principals_changed_update AFTER UPDATE ON principals FOR EACH ROW
  WHEN (OLD.key_hash IS DISTINCT FROM NEW.key_hash OR OLD.enabled IS DISTINCT FROM NEW.enabled
    OR OLD.role IS DISTINCT FROM NEW.role OR OLD.kind IS DISTINCT FROM NEW.kind OR OLD.name IS DISTINCT FROM NEW.name
    OR OLD.id IS DISTINCT FROM NEW.id)
  EXECUTE FUNCTION pht_notify_principal_change();
CREATE TRIGGER principals_changed_delete AFTER DELETE ON principals FOR EACH ROW
  EXECUTE FUNCTION pht_notify_principal_change();
CREATE TRIGGER principals_changed_truncate AFTER TRUNCATE ON principals FOR EACH STATEMENT
  EXECUTE FUNCTION pht_notify_principal_change();
