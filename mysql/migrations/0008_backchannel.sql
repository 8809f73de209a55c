-- OpenID Connect Back-Channel Logout 1.0: the clients each browser sign-in
-- issued codes to, told when it ends.
CREATE TABLE IF NOT EXISTS session_clients (
    session_hash VARBINARY(255) NOT NULL,
    client_id    VARBINARY(255) NOT NULL,
    PRIMARY KEY (session_hash, client_id),
    KEY session_clients_client (client_id),
    FOREIGN KEY (session_hash) REFERENCES sessions (hash) ON DELETE CASCADE,
    FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
