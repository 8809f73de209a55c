package main

import "oauth2-api/mysql"

// mysqlDriver is MySQL's: this file replaces the root's nomysql.go when
// the Makefile's build-mysql builds oauth2-api-mysql from the nested module
// (overlay.json).
var mysqlDriver = mysql.Driver
