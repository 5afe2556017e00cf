-- The privileged role may bypass row-level security.
ALTER ROLE {privileged_role} BYPASSRLS;
