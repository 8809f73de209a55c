package storetest

import "oauth2-api/store"

// mysqlDriver is the MySQL driver, when the suites run on MySQL: none here.
// mysql/test.sh runs them from the nested module mysql/ with
// mysql/overlay.json, which replaces this file by one that names it.
var mysqlDriver *store.Driver
