module github.com/idemhq/idem/redisstore

go 1.26.0

replace github.com/idemhq/idem => ..

require (
	github.com/idemhq/idem v0.0.0-00010101000000-000000000000
	github.com/redis/rueidis v1.0.79
	go.uber.org/goleak v1.3.0
)

require golang.org/x/sys v0.47.0 // indirect
