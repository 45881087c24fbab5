-- 002_tenant_timezone.sql - each tenant's IANA time zone (SPEC §8): the calendar its reports,
-- ladder days and CLV purchase occasions are cut in. Existing tenants keep UTC, the calendar
-- they were reported in so far, so no stored aggregate changes. The name is checked against
-- PostgreSQL's zone database where it is set (rd_tenant_set_timezone, sql/tenants.sql).
ALTER TABLE tenants ADD COLUMN timezone text NOT NULL DEFAULT 'UTC';
