package main

import "oauth2-api/store"

// mysqlDriver is the MySQL driver store.Open uses for mysql:// URLs: none
// here, so oauth2-api refuses them in one line naming oauth2-api-mysql. That
// binary is this package built from the nested module mysql/ (make
// build-mysql), with mysql/overlay.json replacing this file by one that
// names the driver that module holds: the root module, and so every other
// build, never imports it.
var mysqlDriver *store.Driver
