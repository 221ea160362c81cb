-- Who holds a certificate: its issuer and every jurisdiction the exchange sent its issuance to (the
-- holder's residence of the moment keeps a copy). Its revocation and corrections reach them, wherever
-- the holder lives by then (services/migrant_exchange/domain/routing.py). A certificate goes by its
-- number (text, an identifier of the document, not of a person), so not in record_holders (uuid
-- keys, 0026): the number and divisions only, no personal data.
CREATE TABLE certificate_holders (
    number    text NOT NULL,
    division  text NOT NULL,
    PRIMARY KEY (number, division)
);
