// Command floor is the load harness's ceiling: a bare net/http server that
// parses the same form as the token endpoint and writes a fixed JSON answer.
// Nothing can be faster than this on the same machine and client.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	addr := "127.0.0.1:18999"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	body := []byte(`{"access_token":"floor","token_type":"Bearer","expires_in":3600}` + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") == "" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	})
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
