package storetest

import "oauth2-api/mysql"

// mysqlDriver is MySQL's: this file replaces nomysql.go when test.sh runs
// the root module's suites from the nested module (overlay.json), so that
// every suite that loops over Dialects runs on MySQL too.
var mysqlDriver = mysql.Driver
