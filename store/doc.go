// Package store is the contract between the idem engine and the stores it
// runs on, as database/sql/driver is for database/sql: only store authors
// need it. A Store keeps one record per key and decides, atomically, who
// may run fn; a TxStore also runs fn's writes and the record in one
// database transaction.
//
// Each method's comment states its guarantee and names, in parentheses,
// the conformance subtests of package storetest that check it
// (TestContractCitesConformance keeps those names real). A store is
// correct when it passes storetest.Run, and storetest.RunTx for a TxStore.
package store
