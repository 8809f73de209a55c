-- Email addresses are compared in Unicode simple case folding
-- (auth.foldEmail: the lower case of the upper case, rune by rune), no
-- longer in lower case alone. A stored address, lower case already,
-- differs from its new form only by the runes replaced below, each by its
-- fold (µ by μ, ı by i, ſ by s, ς by σ...; auth.TestFoldEmail checks the
-- list): refolded, it is found again by a login in any case. A live
-- address whose new form another live one has, or would have too (ſam@
-- beside sam@, ſſ@ beside ſs@: accounts made twice before the fold made
-- them one), keeps its old form, and that account is found by its
-- username only. Deleted rows are never looked up and stay as they are.
-- A pending verification link names an address's old form: it is
-- refused, as after a change of address, and the user asks for another.
UPDATE users SET email = r.email FROM (
    SELECT min(id) AS id, folded AS email
    FROM (SELECT id, email, REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(email,
        'µ', 'μ'), 'ı', 'i'), 'ſ', 's'), 'ͅ', 'ι'), 'ς', 'σ'), 'ϐ', 'β'),
        'ϑ', 'θ'), 'ϕ', 'φ'), 'ϖ', 'π'), 'ϰ', 'κ'), 'ϱ', 'ρ'), 'ϵ', 'ε'),
        'ᲀ', 'в'), 'ᲁ', 'д'), 'ᲂ', 'о'), 'ᲃ', 'с'), 'ᲄ', 'т'), 'ᲅ', 'т'),
        'ᲆ', 'ъ'), 'ᲇ', 'ѣ'), 'ᲈ', 'ꙋ'), 'ẛ', 'ṡ'), 'ι', 'ι') AS folded
        FROM users WHERE deleted_at IS NULL) c
    WHERE folded <> email AND NOT EXISTS (SELECT 1 FROM users o WHERE o.email = c.folded AND o.deleted_at IS NULL)
    GROUP BY folded HAVING count(*) = 1
) r WHERE users.id = r.id;
