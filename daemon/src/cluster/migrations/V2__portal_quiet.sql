-- Sealgate cluster: the secure web mail portal's keyspaces (portal_*)
-- join the shared state. Nobody waits for changes to them (a session's
-- timer moves on every request, a stored message concerns one reader), so
-- they notify nobody, like the admin sessions.
CREATE OR REPLACE FUNCTION sealgate_kv_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD.space;
    ELSE
        changed := NEW.space;
    END IF;
    IF changed <> 'sessions' AND left(changed, 7) <> 'portal_' THEN
        PERFORM pg_notify('sealgate_changes', changed);
    END IF;
    RETURN NULL;
END
$$;
