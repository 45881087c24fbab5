-- 005_rfm_cutoffs_tenant.sql - the RFM boundaries go with their tenant. An upkeep round that
-- recomputed a tenant's boundaries while `tenant delete` ran could leave a row naming a tenant
-- that no longer exists (the delete's erasure ran before the round's insert committed). With the
-- key, the tenant's delete removes the row whenever it was written, and a round that comes after
-- fails its insert instead of writing one.
DELETE FROM rfm_cutoffs r WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.tenant_id = r.tenant_id);
ALTER TABLE rfm_cutoffs ADD FOREIGN KEY (tenant_id) REFERENCES tenants ON DELETE CASCADE;
