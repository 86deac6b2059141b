-- Sealgate cluster: the shared state (daemon/src/store.rs).
--
-- One ordered key/value table. `space` is the keyspace's name (settings,
-- audit, directory, directory_index, invitations, accounts, sessions,
-- nodes, cluster); keys and values are the bytes a single appliance keeps
-- in the sled tree of the same name. bytea compares byte by byte, so a
-- range scan returns keys in the order sled does.
CREATE TABLE sealgate_kv (
    space text COLLATE "C" NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);

-- Every change tells the nodes which space changed (LISTEN
-- sealgate_changes): settings apply on all nodes within a moment. Web
-- sessions change on every request and nobody waits for them: no notice.
-- NOTIFY is delivered at commit, once per space and transaction.
CREATE FUNCTION sealgate_kv_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD.space;
    ELSE
        changed := NEW.space;
    END IF;
    IF changed <> 'sessions' THEN
        PERFORM pg_notify('sealgate_changes', changed);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sealgate_kv_changed
    AFTER INSERT OR UPDATE OR DELETE ON sealgate_kv
    FOR EACH ROW EXECUTE FUNCTION sealgate_kv_notify();
