-- GET /v1/charges lists an account's charges in created order, within a
-- created range, a page at a time after a cursor (created_at, id): this
-- index serves all three. The listing by reference has its own
-- (payments_by_reference); payments_by_created, of every account, serves
-- reconciliation's windows.
CREATE INDEX payments_of_account_by_created ON payments (account_id, created_at, id);
