-- Grafana's dashboard variables reach panel SQL as ${var:percentencode} inside a string literal: percent-encoded
-- (UTF-8, everything but letters, digits and -_.~), several values as "{a,b}". lykta_var decodes that into a
-- text array for "= ANY (...)". An encoded value holds no quote, no "$" and no parenthesis, so it cannot leave its
-- string literal or form one of the macros that Grafana expands after putting the variables in. A bare "%" (which
-- Grafana never writes: it encodes it as %25) is dropped.
CREATE FUNCTION lykta_var(p_value text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog AS $$
DECLARE
    decoded text;
BEGIN
    SELECT convert_from(coalesce(string_agg(CASE WHEN t.m[1] IS NOT NULL THEN decode(t.m[1], 'hex')
                                                 ELSE convert_to(t.m[2], 'UTF8') END, ''::bytea ORDER BY t.n),
                                 ''::bytea), 'UTF8')
      INTO decoded
      FROM regexp_matches(p_value, '%([0-9A-Fa-f]{2})|([^%]+)', 'g') WITH ORDINALITY AS t(m, n);
    IF left(decoded, 1) = '{' AND right(decoded, 1) = '}' THEN
        IF decoded = '{}' THEN
            RETURN ARRAY[''];  -- one empty value (the district of assets without one), as Grafana writes [""]
        END IF;
        RETURN string_to_array(substr(decoded, 2, length(decoded) - 2), ',');
    END IF;
    RETURN ARRAY[decoded];
END
$$;
